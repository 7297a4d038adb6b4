"""Dataset geometry: the relation d(x, y) a split asks the model to learn, in numbers.

A read's answer y is the value of the latest write to its key. Per read this module measures
what makes that relation easy or hard to shortcut:

- `lag_ops`: operations between the matching write and the read (1 = the operation just before);
- `stale_writes`: earlier writes to the same key (distractors with the right key);
- `other_writes`: writes to other keys before the read (distractors with the right role);
- `answer_seen_before`: how often the answer value appeared earlier in the sequence;
- `reread`: whether the key was already read since its latest write (the answer then appears
  at that read too).

`geometry_report` summarises them per split with the key and value frequencies and joins the
generator's sanity checks (heuristic baselines, overlaps, heldout leakage; see `sanity`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.kv import vocab
from runner.kv.dataset import Split

READ_FEATURES = ("lag_ops", "stale_writes", "other_writes", "answer_seen_before", "reread")


def read_features(split: Split) -> dict[str, np.ndarray]:
    """[read] values of every per-read feature (see the module docstring)."""
    reads = split.reads
    tokens = split.tokens
    answer = reads.single["answer"]
    match_value = reads.single["match_value"]
    seq = reads.sequence
    n = len(reads)
    seen = np.zeros(n, dtype=np.int64)
    reread = np.zeros(n, dtype=bool)
    for i in range(n):
        row = tokens[seq[i]]
        before = row[: answer[i] - 1]  # tokens before the read's `R`
        value_positions = np.arange(3, answer[i] - 1, 3)  # value slot of each earlier op
        seen[i] = int((before[value_positions] == reads.target[i]).sum())
        later_ops = np.arange(match_value[i] + 1, answer[i] - 1, 3)
        reread[i] = bool(
            ((row[later_ops] == vocab.READ) & (row[later_ops + 1] == row[answer[i]])).any()
        )
    return {
        "lag_ops": (answer - 1 - (match_value - 2)) // 3,
        "stale_writes": reads.sets["stale_value"].sum(axis=1),
        "other_writes": reads.sets["other_value"].sum(axis=1),
        "answer_seen_before": seen,
        "reread": reread.astype(np.int64),
    }


def geometry_report(split: Split) -> dict[str, Any]:
    """Per-split summary: feature means and ranges, key and value usage."""
    feats = read_features(split)
    keys = split.tokens[split.reads.sequence, split.reads.single["answer"]] - vocab.FIRST_KEY
    values = split.reads.target - vocab.FIRST_VALUE
    return {
        "split": split.name,
        "sequences": len(split),
        "reads": len(split.reads),
        "features": {
            name: {
                "mean": float(v.mean()) if len(v) else float("nan"),
                "min": int(v.min()) if len(v) else 0,
                "max": int(v.max()) if len(v) else 0,
            }
            for name, v in feats.items()
        },
        "reads_per_key": np.bincount(keys, minlength=vocab.N_KEYS).tolist(),
        "distinct_answer_values": len(np.unique(values)),
        "distinct_answer_pairs": len(np.unique(keys * vocab.N_VALUES + values)),
    }
