"""Report writing under kills, and what `--report DIR` may delete.

A kill is simulated at every rename that writing a report makes (before and after it): the
ledger on disk is then either the old ledger, untouched, or one that states the SHA-256 of the
results JSON beside it: never a new ledger beside old results.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from runner.report.diff import load_results
from runner.report.files import write_reports

DEMO = Path(__file__).resolve().parents[2] / "reports" / "demo.json"
STATED = re.compile(r"- results: `demo.json` \(SHA-256 `([0-9a-f]{64})`\)")


class Killed(BaseException):
    pass


@pytest.fixture(scope="module")
def results():
    full = load_results(DEMO)
    old = full.model_copy(update={"claims": full.claims[:3]})
    new = full.model_copy(update={"claims": full.claims[:2], "study": "changed"})
    return old, new


def stated_hash(ledger: Path) -> str:
    match = STATED.search(ledger.read_text())
    assert match, "the ledger states no results hash"
    return match.group(1)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_kill_at_any_rename_never_leaves_a_new_ledger_beside_old_results(
    results, tmp_path, monkeypatch
):
    old, new = results
    base = tmp_path / "base"
    write_reports(old, base, "demo")
    old_ledger = (base / "demo.md").read_bytes()
    assert stated_hash(base / "demo.md") == sha(base / "demo.json")

    real_replace, renames = os.replace, [0]

    def counting(src, dst):
        renames[0] += 1
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", counting)
        write_reports(new, tmp_path / "count", "demo")
    assert renames[0] >= 4  # figures, their list, the results, the ledger

    for point in range(1, renames[0] + 1):
        for after in (False, True):
            out = tmp_path / f"kill_{point}_{int(after)}"
            shutil.copytree(base, out)
            calls = [0]

            def replace(src, dst, point=point, after=after, calls=calls):
                calls[0] += 1
                if calls[0] == point and not after:
                    raise Killed
                real_replace(src, dst)
                if calls[0] == point:
                    raise Killed

            with monkeypatch.context() as m:
                m.setattr(os, "replace", replace)
                with pytest.raises(Killed):
                    write_reports(new, out, "demo")
            ledger = out / "demo.md"
            if ledger.read_bytes() != old_ledger:
                assert stated_hash(ledger) == sha(out / "demo.json"), (point, after)
            write_reports(new, out, "demo")  # the next run leaves a consistent pair
            assert stated_hash(ledger) == sha(out / "demo.json")


def test_report_writing_removes_only_figures_it_wrote(results, tmp_path):
    old, new = results
    write_reports(old, tmp_path, "demo")
    figures = tmp_path / "figures" / "demo"
    dropped = figures / f"{old.claims[2].name}.png"
    assert dropped.exists()
    mine = figures / "mine.png"
    mine.write_bytes(b"a user's own file")
    write_reports(new, tmp_path, "demo")
    assert not dropped.exists()  # ours, for a claim the study no longer has
    assert mine.read_bytes() == b"a user's own file"
    assert {p.name for p in figures.glob("*.png")} == {f"{c.name}.png" for c in new.claims} | {
        "mine.png"
    }
