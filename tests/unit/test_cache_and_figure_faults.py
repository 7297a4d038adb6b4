"""Hostile cache entries are misses (never a RecursionError or an unbounded read), and the
temporary files a killed report write leaves are removed by the next write — only those."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from runner.atomic import remove_stale_temporaries
from runner.engine.cache import MeasurementCache, entry_key
from runner.report.diff import load_results
from runner.report.files import write_reports

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path) -> tuple[MeasurementCache, str, Path]:
    c = MeasurementCache(tmp_path / "cache")
    key = entry_key(q="x")
    c.put(key, np.arange(4.0))
    return c, key, c._path(key)


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 60_000 + b"\n",
        b"{" * 30_000 + b"\n",
        b'{"key": ' + b"[" * 60_000 + b"\n",
        b"\xff\xfe\n",
        b"x" * 100_000,
        b"",
        b"null\n",
        b'{"key": "KEY", "kind": "values", "n": -1, "sha256": ""}\n',
        b'{"key": "KEY", "kind": "values", "n": 99999999999999, "sha256": ""}\n' + b"\0" * 64,
        b'{"key": "KEY", "kind": "error", "n": "3", "sha256": ""}\nabc',
        b'{"key": "KEY", "kind": "other", "n": 0, "sha256": ""}\n',
    ],
    ids=["deep-list", "deep-object", "deep-key", "binary", "no-newline", "empty", "null",
         "negative-n", "huge-n", "text-n", "kind"],
)  # fmt: skip
def test_a_hostile_entry_is_a_miss(cache, content):
    c, key, path = cache
    path.write_bytes(content.replace(b"KEY", key.encode()))
    assert c.get(key) is None and c.rejected == 1


def test_a_huge_n_reads_no_more_than_the_file_holds(cache):
    c, key, path = cache
    blob = path.read_bytes()
    header, payload = blob.split(b"\n", 1)
    fields = json.loads(header) | {"n": 2**40}
    path.write_bytes(json.dumps(fields).encode() + b"\n" + payload)
    assert c.get(key) is None


def test_a_fifo_in_an_entrys_place_is_a_miss_without_blocking(cache):
    c, key, path = cache
    path.unlink()
    os.mkfifo(path)
    assert c.get(key) is None


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_killed_figure_write_is_cleaned_by_the_next_run(tmp_path):
    demo = load_results(ROOT / "reports" / "demo.json")
    demo = demo.model_copy(update={"claims": demo.claims[:1]})
    figures = tmp_path / "figures" / "demo"
    figures.mkdir(parents=True)
    left = figures / f".{demo.claims[0].name}.png.ab12cd_9.tmp"
    left.write_bytes(b"partial png")
    age(left, 3600)
    fresh = figures / ".other.png.zz99yy88.tmp"  # another writer, at work now
    fresh.write_bytes(b"x")
    ledger = tmp_path / ".demo.md.k3j4h5g6.tmp"
    ledger.write_text("partial")
    age(ledger, 3600)
    mine = [
        figures / "notes.tmp",
        figures / ".notes.txt.ab12cd34.tmp",
        tmp_path / ".x.md.aaaaaaaa.tmp",
    ]
    for path in mine:
        path.write_text("the user's")
        age(path, 3600)
    write_reports(demo, tmp_path, "demo", figures=True)
    assert not left.exists() and not ledger.exists()
    assert fresh.exists() and all(p.exists() for p in mine)


@pytest.mark.parametrize(
    "name, removed",
    [
        (".a.png.abcdefgh.tmp", True),
        (".a.png.abcdefg.tmp", False),  # not mkstemp's 8 characters
        ("a.png.abcdefgh.tmp", False),  # no leading dot
        (".a.png.abcdefgh.tmp.bak", False),
        (".a.jpg.abcdefgh.tmp", False),  # not a file this writer owns
    ],
)
def test_only_owned_temporaries_by_their_pattern_are_removed(tmp_path, name, removed):
    path = tmp_path / name
    path.write_bytes(b"x")
    age(path, 3600)
    remove_stale_temporaries(tmp_path, lambda target: target.endswith(".png"))
    assert path.exists() != removed


def test_a_link_or_directory_named_like_a_temporary_is_left(tmp_path):
    target = tmp_path / "keep"
    target.write_text("k")
    (tmp_path / ".a.png.abcdefgh.tmp").symlink_to(target)
    (tmp_path / ".b.png.abcdefgh.tmp").mkdir()
    assert remove_stale_temporaries(tmp_path, lambda t: True, older_than_s=0) == []
    assert target.exists()
