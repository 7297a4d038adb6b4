"""The measurement library: every quantity a claim can measure, as per-read values.

Takes a model and a probe; gives per-read float arrays. Each module computes one family of
quantities over a `ProbeBatch` (a probe's sequences and reads as tensors) on one model.
Definitions, with formulas, are in each function's docstring and in docs/quantities.md.

- `behaviour`: correctness, loss and margin at read answers.
- `scoring`: forward passes over a split in batches, reduced to per-read and per-split behaviour.
- `probe`: a probe's tokens and reads as tensors; the clean forward pass and its cache.
- `attention`: attention mass between roles, QK score gaps, OV copying.
- `attribution`: direct logit attribution of every component to the linearised margin.
- `paths`: path contributions (single-hop by attribution, multi-hop by path patching).
- `interventions`: zero, mean and resample ablation, patching from a probe or checkpoint.
- `batched`: many edited forward passes at once, each restarting from the clean pass just
  before its first edit, stacked along the batch (what the engine runs per checkpoint).
- `sweep`: per-read behaviour under many single-site ablations, through `batched`.
- `attribution_patching`: first-order estimates of every ablation from one backward pass.
- `gradients`: parameter gradients, `alignment`, `update_alignment` (K targets stacked).
- `features`: feature scores, paths to and from features, edits in a basis.
- `quantities`: a compiled quantity measured on one checkpoint and probe (the engine's entry).
- `per_example`: per-example loss gradients and Gram summaries.
"""
