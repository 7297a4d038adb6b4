"""Roles: the named token positions of every read, computed from the token sequence alone.

For each read `R k v` (see DESIGN.md, Roles):

| role | positions |
|---|---|
| `answer` | the read's key token, where the model must predict `v` |
| `read_op` | the read's `R` token |
| `match_key`, `match_value` | key and value tokens of the latest write to `k` before the read |
| `stale_value` | value tokens of earlier writes to `k` (overwritten) |
| `other_key`, `other_value` | key and value tokens of writes to other keys before the read |
| `bos` | position 0 |

Single-position roles are stored as an index per read; set roles as a boolean mask per read over
the sequence positions, so a role may be empty (a read with no stale value, say).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runner.kv import vocab

SINGLE_ROLES = ("answer", "read_op", "match_key", "match_value", "bos")
SET_ROLES = ("stale_value", "other_key", "other_value")
ROLE_NAMES = SINGLE_ROLES + SET_ROLES


@dataclass(frozen=True)
class ReadTable:
    """Every read of a split: its sequence, target token, and role positions."""

    sequence: np.ndarray  # [read] int64: index of the read's sequence
    target: np.ndarray  # [read] int64: the value token the model must predict
    single: dict[str, np.ndarray]  # role -> [read] int64 position
    sets: dict[str, np.ndarray]  # role -> [read, pos] bool

    def __len__(self) -> int:
        return len(self.sequence)

    def subset(self, keep: np.ndarray) -> ReadTable:
        """The reads selected by a [read] bool mask."""
        return ReadTable(
            sequence=self.sequence[keep],
            target=self.target[keep],
            single={r: v[keep] for r, v in self.single.items()},
            sets={r: v[keep] for r, v in self.sets.items()},
        )

    def mask(self, role: str, seq_len: int) -> np.ndarray:
        """[read, pos] bool mask of `role`, for single and set roles alike."""
        if role in self.sets:
            return self.sets[role][:, :seq_len]
        out = np.zeros((len(self), seq_len), dtype=bool)
        out[np.arange(len(self)), self.single[role]] = True
        return out


def reads_of_sequence(tokens: np.ndarray) -> list[dict[str, object]]:
    """Roles of each read in one token sequence (positions index into `tokens`)."""
    writes: dict[int, list[tuple[int, int]]] = {}  # key -> [(key_pos, value_pos)]
    reads = []
    pos = 1
    while pos + 2 < len(tokens) and tokens[pos] in (vocab.WRITE, vocab.READ):
        op, key = int(tokens[pos]), int(tokens[pos + 1])
        if op == vocab.WRITE:
            writes.setdefault(key, []).append((pos + 1, pos + 2))
        else:
            own = writes[key]
            others = [p for k, ps in writes.items() if k != key for p in ps]
            reads.append(
                {
                    "target": int(tokens[pos + 2]),
                    "answer": pos + 1,
                    "read_op": pos,
                    "match_key": own[-1][0],
                    "match_value": own[-1][1],
                    "bos": 0,
                    "stale_value": [v for _, v in own[:-1]],
                    "other_key": [k for k, _ in others],
                    "other_value": [v for _, v in others],
                }
            )
        pos += 3
    return reads


def build_read_table(tokens: np.ndarray) -> ReadTable:
    """The read table of a whole split from its [sequence, pos] token array."""
    rows = [(i, r) for i, seq in enumerate(tokens) for r in reads_of_sequence(seq)]
    n, seq_len = len(rows), tokens.shape[1]
    sets = {role: np.zeros((n, seq_len), dtype=bool) for role in SET_ROLES}
    for j, (_, r) in enumerate(rows):
        for role in SET_ROLES:
            sets[role][j, r[role]] = True  # type: ignore[index]
    return ReadTable(
        sequence=np.array([i for i, _ in rows], dtype=np.int64),
        target=np.array([r["target"] for _, r in rows], dtype=np.int64),
        single={
            role: np.array([r[role] for _, r in rows], dtype=np.int64) for role in SINGLE_ROLES
        },
        sets=sets,
    )
