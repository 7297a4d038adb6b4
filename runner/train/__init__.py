"""Training: a run directory filled with dense checkpoints and per-split metrics.

Takes a `TrainConfig` and an output directory; gives `config.json`, `signature.json`, the
benchmark's data, `checkpoints/` and `metrics.jsonl`, resumable after a kill. It sits above
`measure` because it scores every split at each checkpoint with `measure.scoring`.

- `loop`: the training loop, the batch order, checkpoints and resume state.
- `cli`: `hypo train`'s progress bar and per-checkpoint lines.
"""
