"""The model and its run directory.

Takes a config (named or a JSON file) and the benchmark's vocabulary; gives a `Transformer` whose
every activation has a hook point, the safetensors + JSON checkpoints it is saved as, and the
plain-JSON files of a run directory (`config.json`, `signature.json`).

- `transformer`: the GPT-2-architecture decoder, written for reading.
- `hooks`: hook points and the context managers that attach hooks (removed in `finally`).
- `configs`: training configs (`reference`, `small`, `tiny`, or a JSON file).
- `checkpoints`: saving, listing, hashing and loading checkpoints (never pickle).
- `rundir`: the layout of a run directory and its signature.
- `planted`: a transformer with weights set by hand to solve retrieval (the ground truth).
"""
