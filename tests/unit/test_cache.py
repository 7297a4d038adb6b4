"""The measurement cache trusts only entries that are complete, unaltered and its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runner.engine.cache import MeasurementCache, entry_key

VALUES = np.array([0.25, -1.5, 3.0, np.nan])


@pytest.fixture
def cache(tmp_path: Path) -> MeasurementCache:
    return MeasurementCache(tmp_path / "cache")


def stored(cache: MeasurementCache, value: np.ndarray | str, **parts: object) -> tuple[str, Path]:
    key = entry_key(**parts or {"q": "accuracy"})
    cache.put(key, value)
    (path,) = [p for p in cache.entries() if p.stem == key]
    return key, path


def test_values_and_errors_round_trip_exactly(cache):
    key, _ = stored(cache, VALUES)
    got = cache.get(key, n_values=4)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_array_equal(got, VALUES)
    err_key, _ = stored(cache, "role `stale_value` is empty on probe iid", q="attention")
    assert cache.get(err_key) == "role `stale_value` is empty on probe iid"
    assert cache.rejected == 0


def test_a_changed_value_is_not_used(cache):
    key, path = stored(cache, VALUES)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of the last value
    path.write_bytes(bytes(data))
    assert cache.get(key) is None and cache.rejected == 1


def test_a_truncated_or_extended_entry_is_not_used(cache):
    key, path = stored(cache, VALUES)
    data = path.read_bytes()
    for damaged in (data[:-8], data + b"\x00" * 8, data[:10], b""):
        path.write_bytes(damaged)
        assert cache.get(key) is None


def test_values_of_another_length_than_the_probe_has_are_not_used(cache):
    key, _ = stored(cache, VALUES)
    assert cache.get(key, n_values=5) is None
    assert cache.get(key, n_values=4) is not None


def test_a_forged_error_entry_is_not_used(cache):
    key, path = stored(cache, VALUES)
    path.write_bytes(json.dumps({"error": "forged"}).encode() + b"\n")
    assert cache.get(key) is None
    header = {"key": key, "kind": "error", "n": 6, "sha256": "0" * 64}
    path.write_bytes(json.dumps(header).encode() + b"\nforged")
    assert cache.get(key) is None


def test_an_entry_copied_from_another_key_is_not_used(cache):
    key_a, path_a = stored(cache, VALUES, q="a")
    key_b, path_b = stored(cache, VALUES * 2, q="b")
    path_b.write_bytes(path_a.read_bytes())
    assert cache.get(key_b) is None
    assert cache.get(key_a) is not None


def test_a_directory_or_link_in_an_entrys_place_is_a_miss_and_put_survives(cache, tmp_path):
    key, path = stored(cache, VALUES)
    path.unlink()
    path.mkdir()
    assert cache.get(key) is None
    cache.put(key, VALUES)  # cannot replace the directory: the value stays unstored
    assert cache.unwritten == 1 and path.is_dir()
    path.rmdir()
    outside = tmp_path / "elsewhere.entry"
    outside.write_bytes(b"x")
    path.symlink_to(outside)
    assert cache.get(key) is None


def test_clear_removes_entries_of_old_formats_too(cache):
    stored(cache, VALUES)
    old = cache.root / "v1" / "ab" / "x.npy"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    assert cache.clear() == 1
    assert not any(cache.root.iterdir())
