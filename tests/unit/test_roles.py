"""Roles point at the right tokens, on a hand-written sequence and on generated ones."""

from __future__ import annotations

import numpy as np

from runner.kv import vocab
from runner.kv.roles import build_read_table, reads_of_sequence


def tok(text: str) -> np.ndarray:
    ids = {name: i for i, name in enumerate(vocab.token_names())}
    return np.array([ids[t] for t in text.split()])


def test_roles_of_a_hand_written_sequence():
    #        0     1 2   3   4 5   6   7 8   9   10 11 12 13 14  15  16 17  18  19
    seq = tok("<bos> W K00 V12 W K03 V04 W K00 V07 W  K03 V05 R  K00 V07 R  K03 V05 <eos>")
    reads = reads_of_sequence(seq)
    assert len(reads) == 2
    first = reads[0]
    assert first["answer"] == 14 and first["read_op"] == 13
    assert first["match_key"] == 8 and first["match_value"] == 9
    assert first["stale_value"] == [3]
    assert first["other_key"] == [5, 11] and first["other_value"] == [6, 12]
    assert first["target"] == seq[9]
    second = reads[1]
    assert second["match_value"] == 12 and second["stale_value"] == [6]
    assert second["other_value"] == [3, 9]


def test_roles_point_at_the_right_tokens_in_generated_data(small_arrays):
    tokens = small_arrays["test_iid"]["tokens"].astype(np.int64)
    table = build_read_table(tokens)
    seq = tokens[table.sequence]
    rows = np.arange(len(table))
    key = seq[rows, table.single["answer"]]
    assert (seq[rows, table.single["read_op"]] == vocab.READ).all()
    assert (seq[rows, table.single["answer"] + 1] == table.target).all()
    assert (seq[rows, table.single["match_key"]] == key).all()
    assert (seq[rows, table.single["match_value"]] == table.target).all()
    assert (seq[rows, table.single["bos"]] == vocab.BOS).all()
    for i in range(len(table)):
        stale = np.flatnonzero(table.sets["stale_value"][i])
        assert (seq[i, stale - 1] == key[i]).all() and (seq[i, stale] != table.target[i]).all()
        assert (stale < table.single["match_value"][i]).all()
        others = np.flatnonzero(table.sets["other_key"][i])
        assert (seq[i, others] != key[i]).all() and (seq[i, others - 1] == vocab.WRITE).all()
        assert (others < table.single["read_op"][i]).all()


def test_stored_read_tables_match_rebuilt_ones(small_arrays):
    arrays = small_arrays["heldout"]
    table = build_read_table(arrays["tokens"].astype(np.int64))
    assert np.array_equal(arrays["read_sequence"], table.sequence)
    assert np.array_equal(arrays["role_match_value"], table.single["match_value"])
    assert np.array_equal(arrays["role_stale_value"].astype(bool), table.sets["stale_value"])
