"""The benchmark's sanity report: overlaps, heldout leakage and heuristic baselines.

Computed from the saved token arrays alone, independently of how the generator avoided them:

- exact-sequence overlap: sequences present in two splits;
- latent-program overlap: programs equal up to renaming keys and values (`latent_form`);
- heldout leakage: writes of a heldout (key, value) pair outside the heldout split;
- heuristic baselines, answer accuracy at every read of the evaluation splits:
  `first_value_for_key` (the first value written to the read's key),
  `last_value_before_query` (the value token just before the read's `R`), and
  `most_frequent_value_before_query` in four variants (values of the read's key or of any key,
  counting writes only or writes and reads; ties go to the value seen first). The draft reports
  the strongest variant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import combinations

import numpy as np

from runner.kv import vocab
from runner.kv.programs import Op, latent_form
from runner.kv.roles import reads_of_sequence

Heuristic = Callable[[list[Op], int], int]


def ops_of(tokens: np.ndarray) -> list[Op]:
    ops = []
    for pos in range(1, len(tokens) - 2, 3):
        if tokens[pos] not in (vocab.WRITE, vocab.READ):
            break
        key = int(tokens[pos + 1]) - vocab.FIRST_KEY
        ops.append(Op(tokens[pos] == vocab.READ, key, int(tokens[pos + 2]) - vocab.FIRST_VALUE))
    return ops


def first_value_for_key(prefix: list[Op], key: int) -> int:
    return next(op.value for op in prefix if op.key == key and not op.is_read)


def last_value_before_query(prefix: list[Op], key: int) -> int:
    return prefix[-1].value


def _most_frequent(same_key: bool, with_reads: bool) -> Heuristic:
    def heuristic(prefix: list[Op], key: int) -> int:
        counts = Counter(
            op.value
            for op in prefix
            if (with_reads or not op.is_read) and (not same_key or op.key == key)
        )
        return counts.most_common(1)[0][0]  # ties: first seen (Counter keeps insertion order)

    return heuristic


HEURISTICS: dict[str, Heuristic] = {
    "first_value_for_key": first_value_for_key,
    "last_value_before_query": last_value_before_query,
    "most_frequent_value_before_query[key,writes]": _most_frequent(True, False),
    "most_frequent_value_before_query[key,writes+reads]": _most_frequent(True, True),
    "most_frequent_value_before_query[any,writes]": _most_frequent(False, False),
    "most_frequent_value_before_query[any,writes+reads]": _most_frequent(False, True),
}


def heuristic_accuracy(tokens: np.ndarray) -> dict[str, float]:
    """Answer accuracy of every heuristic over all reads of a split."""
    hits = dict.fromkeys(HEURISTICS, 0)
    n = 0
    for seq in tokens:
        ops = ops_of(seq)
        for i, op in enumerate(ops):
            if not op.is_read:
                continue
            n += 1
            for name, heuristic in HEURISTICS.items():
                hits[name] += heuristic(ops[:i], op.key) == op.value
    return {name: h / n for name, h in hits.items()}


def _overlap(a: np.ndarray, b: np.ndarray, latent: bool) -> int:
    def forms(tokens: np.ndarray) -> set:
        if latent:
            return {latent_form(ops_of(seq)) for seq in tokens}
        return {seq.tobytes() for seq in tokens}

    return len(forms(a) & forms(b))


def leakage(split_tokens: dict[str, np.ndarray], heldout_pairs: np.ndarray) -> int:
    """Writes of a heldout pair in any split other than `heldout`."""
    leaks = 0
    for split, tokens in split_tokens.items():
        if split == "heldout":
            continue
        for seq in tokens:
            leaks += sum(heldout_pairs[op.key, op.value] for op in ops_of(seq) if not op.is_read)
    return int(leaks)


def sanity_report(
    split_tokens: dict[str, np.ndarray], heldout_pairs: np.ndarray, eval_splits: tuple[str, ...]
) -> dict:
    """The whole report as a JSON-ready dict. `split_tokens` includes clean counterfactuals
    under the name `counterfactual_clean`."""
    names = list(split_tokens)
    pairs = list(combinations(names, 2))
    exact = {f"{a}|{b}": _overlap(split_tokens[a], split_tokens[b], False) for a, b in pairs}
    latent = {
        f"{a}|{b}": _overlap(split_tokens[a], split_tokens[b], True)
        for a, b in pairs
        if {a, b} != {"counterfactual", "counterfactual_clean"}
    }
    per_split = {s: heuristic_accuracy(split_tokens[s]) for s in eval_splits}
    pooled = heuristic_accuracy(np.concatenate([split_tokens[s] for s in eval_splits]))
    mf = {k: v for k, v in pooled.items() if k.startswith("most_frequent")}
    answer_share = {s: _answer_target_share(split_tokens[s]) for s in eval_splits}
    return {
        "exact_sequence_overlap": sum(exact.values()),
        "latent_program_overlap": sum(latent.values()),
        "heldout_leakage": leakage(split_tokens, heldout_pairs),
        "heuristics": {
            "first_value_for_key": pooled["first_value_for_key"],
            "last_value_before_query": pooled["last_value_before_query"],
            "most_frequent_value_before_query": max(mf.values()),
            "most_frequent_value_before_query_variant": max(mf, key=mf.__getitem__),
        },
        "heuristics_per_split": per_split,
        "answer_target_share": answer_share,
        "overlap_pairs": {"exact": exact, "latent": latent},
    }


def _answer_target_share(tokens: np.ndarray) -> float:
    """Fraction of next-token targets (positions 1..len-1) that are read answers."""
    targets = int(sum((seq != vocab.PAD).sum() - 1 for seq in tokens))
    answers = sum(len(reads_of_sequence(seq)) for seq in tokens)
    return answers / targets
