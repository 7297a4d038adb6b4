"""The engine: a compiled plan evaluated over a run's checkpoints.

Takes a `Plan` and a run directory (or a seed matrix of them); gives a `StudyResult`. It turns
the plan into measurement requests, serves them from the disk cache or measures them one
checkpoint at a time (in this process or in worker processes), then hands the per-read values
to the statistics.

- `study`: requests, scheduling across checkpoints and processes, judging, results.
- `step_worker`: one checkpoint's unit of work: load the model once, measure every request.
- `cache`: the on-disk measurement cache, keyed by content hashes.
- `progress`: the phases the engine reports while it works.
"""
