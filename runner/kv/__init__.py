"""The stream KV benchmark: vocabulary, program generator, roles and sanity report.

Takes a `DataConfig` (sizes and seed); gives every split as token arrays with the roles of every
read, a manifest with content hashes, and the sanity report. It imports no other stage.

- `vocab`, `programs`: the tokens and the sampling of one program under the constraints.
- `roles`: the named positions of every read, from the token sequence alone.
- `dataset`: generating, saving and loading the splits.
- `sanity`: overlaps, heldout leakage and heuristic baselines; `geometry`: dataset geometry.
- `cli`: `hypo data generate`.
"""
