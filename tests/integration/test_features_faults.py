"""Fault injection at `hypo features fit|explore` and at a basis `hypo run` reads: a hostile
basis file or argument is a one-line error naming the file or flag, exit 2, before anything
heavy is allocated or any directory is created — never a traceback, a terabyte allocation, a
directory outside the run, or a basis of another run silently accepted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.features import planted as fp
from runner.features.basis import BasisError, load_basis
from runner.features.fit_checks import check_fit_memory, fit_bytes
from tests.conftest import SMALL_DATA
from tests.integration.fault_helpers import refused
from tests.integration.planted_features import BASIS, write_planted_run

SITE = fp.SITE
INFO = "hypodsl_basis.json"


@pytest.fixture(scope="module")
def planted_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted_run(tmp_path_factory.mktemp("planted") / "planted", SMALL_DATA)


@pytest.fixture
def run(planted_source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(planted_source, tmp_path / "run"))


def edit_json(path: Path, **fields: object) -> None:
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def declare(run: Path, **fields: object) -> Path:
    """The basis with `fields` declared in both its JSON files (so they agree)."""
    basis = run / BASIS
    edit_json(basis / INFO, **fields)
    cfg = {"d_sae": fields["d_sae"]} if "d_sae" in fields else {}
    cfg |= {"d_in": fields["d_in"]} if "d_in" in fields else {}
    edit_json(basis / "cfg.json", **cfg)
    return basis


def explore(basis: Path, out: Path, *extra: str | Path) -> list[str]:
    return ["features", "explore", str(basis), "--out", str(out), *map(str, extra)]


def fit(run: Path, *extra: str | Path) -> list[str]:
    return ["features", "fit", "--run", str(run), "--train-steps", "2", *map(str, extra)]


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"d_sae": 10**6}, "not F32 [320, 1000000]"),
        ({"d_sae": 10**12}, "not F32 [320, 1000000000000]"),
        ({"d_in": 10**9}, "not F32 [1000000000, 130]"),
        ({"d_sae": 0}, "d_sae"),
        ({"d_sae": -5}, "d_sae"),
        ({"d_sae": "many"}, "d_sae"),
        ({"site": "blocks.1.\x1b[2J"}, "is not a hook name"),
        ({"format": 99}, "basis format 99"),
    ],
    ids=["million", "trillion", "wide-in", "zero", "negative", "text", "escape-site", "format"],
)
def test_a_hostile_declared_shape_is_refused_before_allocating(capsys, run, tmp_path, fields, says):
    basis = declare(run, **fields)
    out = tmp_path / "report"
    line = refused(capsys, explore(basis, out), tmp_path, out, str(basis))
    assert says in line and "\x1b" not in line


def test_a_hostile_shape_blocks_only_its_claims_in_hypo_run(run):
    declare(run, d_sae=10**9)
    with pytest.raises(BasisError, match=r"W_enc.*not F32 \[320, 1000000000\]"):
        load_basis(run / BASIS)


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda b: (b / INFO).write_text("[" * 60_000), "nested too deeply"),
        (lambda b: (b / INFO).write_text("{"), "invalid JSON"),
        (lambda b: (b / INFO).unlink(), "no such file"),
        (lambda b: ((b / INFO).unlink(), (b / INFO).mkdir()), "not a regular file"),
        (lambda b: ((b / INFO).unlink(), (b / INFO).symlink_to("/dev/zero")), "not a regular"),
        (lambda b: edit_json(b / INFO, extra=1), "extra"),
        (lambda b: edit_json(b / "cfg.json", architecture="gated"), "`standard` architecture"),
        (lambda b: edit_json(b / "cfg.json", hook_name="blocks.0.hook_resid_pre"), "disagree"),
        (lambda b: (b / "sae_weights.safetensors").write_bytes(b"x" * 10), "corrupt basis"),
        (lambda b: (b / "sae_weights.safetensors").unlink(), "missing"),
    ],
    ids=["deep", "json", "no-info", "info-dir", "info-dev", "extra-field", "architecture",
         "hook-name", "weights-bytes", "no-weights"],
)  # fmt: skip
def test_a_damaged_basis_is_one_line_naming_its_file(capsys, run, tmp_path, damage, says):
    basis = run / BASIS
    damage(basis)
    out = tmp_path / "report"
    line = refused(capsys, explore(basis, out), tmp_path, out, str(basis))
    assert says in line, line


def test_a_forged_weights_header_is_refused_after_its_hash(capsys, run, tmp_path):
    """The attacker controls the hash too: the header is checked against the declared shape."""
    import hashlib

    from safetensors.torch import save

    basis = run / BASIS
    tensors = {
        k: v[:1] if v.dim() == 1 else v[:1, :1] for k, v in fp.planted_basis().state().items()
    }
    blob = save(tensors)
    (basis / "sae_weights.safetensors").write_bytes(blob)
    edit_json(basis / INFO, weights_sha256=hashlib.sha256(blob).hexdigest())
    out = tmp_path / "report"
    line = refused(capsys, explore(basis, out), tmp_path, out, "sae_weights.safetensors")
    assert "not F32" in line


def test_a_basis_fitted_on_another_run_is_refused_by_explore(capsys, run, tmp_path):
    other = Path(shutil.copytree(run, tmp_path / "other"))
    edit_json(other / "config.json", name="another")
    out = tmp_path / "report"
    line = refused(capsys, explore(run / BASIS, out, "--run", other), tmp_path, out, str(run))
    assert "fitted on run `planted`" in line and "not on this run" in line


def test_a_basis_copied_into_a_run_with_other_data_is_refused(capsys, run, tmp_path):
    other = Path(shutil.copytree(run, tmp_path / "other"))
    edit_json(other / "data" / "dataset.json", data_hash="0" * 64)
    out = tmp_path / "report"
    line = refused(capsys, explore(other / BASIS, out), tmp_path, out, "other")
    assert "not on this run (data 000000000000" in line


@pytest.mark.parametrize(
    "target, says",
    [
        ("/etc", "/etc/hypodsl_basis.json: no such file"),
        ("/", "no such file"),
        ("/dev/null", "no basis directory"),
        ("does-not-exist", "no basis directory"),
    ],
)
def test_explore_of_a_place_that_is_no_basis(capsys, tmp_path, monkeypatch, target, says):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report"
    line = refused(capsys, explore(Path(target), out), tmp_path, out, target)
    assert says in line


def test_a_basis_at_the_filesystem_root_has_no_default_run(capsys, tmp_path, monkeypatch):
    from runner.features.basis import FORMAT

    monkeypatch.setattr("runner.features.basis.read_info", lambda d: FORMAT)
    out = tmp_path / "report"
    line = refused(capsys, explore(Path("/tmp"), out), tmp_path, out, "/tmp")
    assert "--run RUN" in line


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--name", "../../escape"], "--name"),
        (["--name", "a b"], "--name"),
        (["--name", "x\x1b[2J"], "--name"),
        (["--threshold", "1.5"], "--threshold"),
        (["--threshold", "nan"], "--threshold"),
        (["--probe-split", "../../etc"], "--probe-split ../../etc"),
        (["--run", "/etc"], "not a run directory"),
    ],
    ids=["dotdot-name", "space-name", "escape-name", "threshold", "nan", "split", "run-etc"],
)
def test_explore_arguments(capsys, run, tmp_path, extra, says):
    out = tmp_path / "report"
    line = refused(capsys, explore(run / BASIS, out, *extra), tmp_path, out, says)
    assert "\x1b" not in line


@pytest.mark.parametrize(
    "site, says",
    [
        ("../../..", "no hook point `../../..`"),
        ("../../../tmp/evil", "no hook point"),
        ("/abs/path", "no hook point"),
        ("blocks.1.hook_resid_pots", "did you mean `blocks.1.hook_resid_post`"),
        ("blocks.0.attn.hook_pattern", "one vector per token"),
        ("blocks.0.hook_scale", "no hook point"),
        ("", "no hook point"),
        ("blocks.99.hook_resid_post", "no hook point"),
    ],
    ids=["dotdot", "dotdot-tmp", "absolute", "typo", "pattern", "unknown", "empty", "layer"],
)
def test_fit_checks_the_site_before_creating_anything(capsys, run, tmp_path, site, says):
    default_out = (run / "features" / site).resolve()
    existed = default_out.exists()
    line = refused(capsys, fit(run, "--site", site), tmp_path, None, f"--site {site}")
    assert says in line
    assert default_out.exists() == existed  # nothing created, inside the run or outside it
    assert sorted(p.name for p in (run / "features").iterdir()) == ["values"]


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--width", str(1 << 20)], "--width 1048576"),
        (["--width", str(1 << 21)], "1..1048576"),
        (["--width", "0"], "1..1048576"),
        (["--probe-split", "nope"], "--probe-split nope"),
        (["--steps", "5..1"], "--steps 5..1"),
        (["--steps", "1"], "not a range of steps"),
        (["--l1", "nan"], "--l1"),
        (["--sequences", "-1"], "--sequences"),
    ],
    ids=["width-max", "width-over", "width-zero", "split", "steps-empty", "steps-form", "l1",
         "sequences"],
)  # fmt: skip
def test_fit_arguments(capsys, run, tmp_path, extra, says):
    out = tmp_path / "basis"
    before = sorted(p.name for p in (run / "features").iterdir())
    capsys.readouterr()
    from hypodsl.cli import main

    code = main(fit(run, "--site", SITE, "--out", out, *extra))
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and "Traceback" not in err and says in lines[-1], err
    assert not out.exists() and sorted(p.name for p in (run / "features").iterdir()) == before


def test_the_width_bound_follows_memory():
    d_in, batch = 320, 1024
    budget = 12 * 2**30
    most = budget // fit_bytes(d_in, 1, batch)
    check_fit_memory(d_in, most, batch, budget)
    with pytest.raises(BasisError, match=f"use --width {most} or less"):
        check_fit_memory(d_in, most + 1, batch, budget)
