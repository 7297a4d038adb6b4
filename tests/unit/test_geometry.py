"""Dataset geometry on a hand-written sequence whose every feature is known."""

from __future__ import annotations

import numpy as np

from runner.kv import vocab
from runner.kv.dataset import Split
from runner.kv.geometry import geometry_report, read_features
from runner.kv.roles import build_read_table


def tokens_of(ops: list[tuple[str, int, int]]) -> np.ndarray:
    out = [vocab.BOS]
    for op, key, value in ops:
        code = vocab.WRITE if op == "W" else vocab.READ
        out += [code, vocab.key_token(key), vocab.value_token(value)]
    return np.array([[*out, vocab.EOS]], dtype=np.int64)


def test_read_features_of_a_hand_written_sequence():
    ops = [
        ("W", 0, 5),  # op 1
        ("W", 1, 7),  # op 2
        ("W", 0, 9),  # op 3: latest write to key 0
        ("W", 1, 5),  # op 4
        ("R", 0, 9),  # op 5: reads key 0 -> 9
        ("R", 0, 9),  # op 6: reads key 0 again (a reread)
        ("R", 1, 5),  # op 7: reads key 1 -> 5
    ]
    tokens = tokens_of(ops)
    split = Split("hand", tokens, np.array([tokens.shape[1]]), build_read_table(tokens))
    features = read_features(split)
    assert features["lag_ops"].tolist() == [2, 3, 3]
    assert features["stale_writes"].tolist() == [1, 1, 1]
    assert features["other_writes"].tolist() == [2, 2, 2]
    assert features["answer_seen_before"].tolist() == [1, 2, 2]  # 9 once, 9 twice, 5 twice
    assert features["reread"].tolist() == [0, 1, 0]
    report = geometry_report(split)
    assert report["reads"] == 3 and report["reads_per_key"][:2] == [2, 1]
    assert report["distinct_answer_values"] == 2 and report["distinct_answer_pairs"] == 2
