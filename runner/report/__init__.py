"""The reports: what a `StudyResult` looks like to a person and to CI.

Takes result models (`runner.stats.results`); gives Rich renderables, the Markdown claim ledger
with one figure per claim, the JSON results on disk, the CI gate's checks and the diff of two
result sets. It never imports the engine.

- `terminal`: Rich tables and progress bars (pure functions; the CLI prints them).
- `ledger`: the Markdown claim ledger, a pure function of the results.
- `figures`: one PNG per claim: each prediction's quantity across the checkpoints.
- `files`: writing NAME.md, NAME.json and the figures atomically.
- `gate`: the CI gate: each claim's verdict against what it is expected to be.
- `diff`: what changed between two result sets.
"""
