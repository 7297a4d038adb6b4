"""Feature bases: sparse autoencoders fitted on a run's activations, pooled across checkpoints.

Takes a run directory (its checkpoints and data) and a hook site; gives a basis directory in the
file layout SAELens reads (`cfg.json`, `sae_weights.safetensors`) plus `hypodsl_basis.json`
(what it was fitted on, and its fit metrics per checkpoint), and the exploration report that
suggests families. One feature id is one direction at every checkpoint. The measurement stage
reads bases through `runner.features.basis`.
"""
