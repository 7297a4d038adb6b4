"""Broken run directories and verdicts that cannot be trusted.

Each case damages a copy of the tiny run. `hypo run` must then stop with exit 2 and a one-line
error that names the file before it measures anything, or give Unsupported, with the reason, to
exactly the claims that read what is broken. Never a traceback, a hang or a confident verdict.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_tensors

from hypodsl.cli import main
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.study import run_study
from runner.model.checkpoints import load_state, sidecar_path, weights_path
from runner.stats.bootstrap import MIN_SEQUENCES

SPEC = """study "hostile"
probe iid = split test_iid n 48 seed 0
claim at_first "The untrained model is at chance" {
  at first on iid: accuracy < 0.5
}
claim at_final "The loss at the end is finite" {
  at final on iid: loss < 100
}
"""


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def cli(*args: str | Path, timeout: float = 60) -> tuple[int, str]:
    """`hypo ARGS` in-process, failing the test if it takes longer than `timeout`."""
    out: list[tuple[int, str]] = []

    def target() -> None:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            code = main([str(a) for a in args])
        out.append((code, buffer.getvalue()))

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"hypo {' '.join(map(str, args))} hung"
    return out[0]


def run_spec(run_dir: Path, tmp_path: Path, text: str = SPEC) -> tuple[int, str]:
    spec = tmp_path / "hostile.hyp"
    spec.write_text(text)
    return cli("run", spec, "--run", run_dir, "--no-cache")


def final_step(run_dir: Path) -> int:
    return int(json.loads((run_dir / "signature.json").read_text())["final_step"])


def rewrite_checkpoint(run_dir: Path, step: int, change: Callable[[dict], dict]) -> None:
    """Replace a checkpoint's weights and update its sidecar's hash, as a careless tool would."""
    import hashlib

    blob = save_tensors(change(dict(load_state(run_dir, step))))
    weights_path(run_dir, step).write_bytes(blob)
    sidecar = json.loads(sidecar_path(run_dir, step).read_text())
    sidecar["sha256"] = hashlib.sha256(blob).hexdigest()
    sidecar_path(run_dir, step).write_text(json.dumps(sidecar))


# --- a one-line error, exit 2, before any measuring ---------------------------------------

BREAK_BEFORE_MEASURING: dict[str, tuple[Callable[[Path], None], str]] = {
    "signature-missing-field": (
        lambda r: (r / "signature.json").write_text(json.dumps({"model": {"n_layers": 2}})),
        "signature.json: field `model.n_heads`: Field required",
    ),
    "signature-wrong-type": (
        lambda r: (r / "signature.json").write_text(
            (r / "signature.json").read_text().replace('"n_layers": 2', '"n_layers": "two"')
        ),
        "signature.json: field `model.n_layers`",
    ),
    "signature-binary": (
        lambda r: (r / "signature.json").write_bytes(b"\xff\xfe\x00garbage"),
        "signature.json: not UTF-8 text",
    ),
    "signature-directory": (
        lambda r: ((r / "signature.json").unlink(), (r / "signature.json").mkdir()),
        "signature.json: not a regular file",
    ),
    "config-bad-field": (
        lambda r: (r / "config.json").write_text('{"name": "tiny", "steps": "many"}'),
        "config.json: field `steps`",
    ),
    "config-bad-json": (
        lambda r: (r / "config.json").write_text('{"name": '),
        "config.json:1:10: invalid JSON",
    ),
    "dataset-bad-field": (
        lambda r: (r / "data" / "dataset.json").write_text('{"splits": 3}'),
        "dataset.json: field `config`",
    ),
    "split-truncated": (
        lambda r: (r / "data" / "test_iid.safetensors").write_bytes(
            (r / "data" / "test_iid.safetensors").read_bytes()[:1000]
        ),
        "test_iid.safetensors: does not match dataset.json's SHA-256",
    ),
    "split-tampered": (
        lambda r: (r / "data" / "test_iid.safetensors").write_bytes(
            (r / "data" / "test_iid.safetensors").read_bytes()[:-1] + b"\x01"
        ),
        "test_iid.safetensors: does not match dataset.json's SHA-256",
    ),
    "split-link-to-device": (
        lambda r: (
            (r / "data" / "test_iid.safetensors").unlink(),
            (r / "data" / "test_iid.safetensors").symlink_to("/dev/zero"),
        ),
        "test_iid.safetensors: not a regular file",
    ),
}


@pytest.mark.parametrize("case", sorted(BREAK_BEFORE_MEASURING))
def test_a_broken_run_file_is_a_one_line_error_before_measuring(run_copy, tmp_path, case):
    damage, message = BREAK_BEFORE_MEASURING[case]
    damage(run_copy)
    code, output = run_spec(run_copy, tmp_path)
    assert code == 2, output
    assert message in output, output
    assert "Traceback" not in output and "measurements (" not in output


# --- Unsupported for the claims that read a broken checkpoint ------------------------------


def _fifo(r: Path) -> None:
    weights_path(r, final_step(r)).unlink()
    os.mkfifo(weights_path(r, final_step(r)))


BREAK_FINAL_CHECKPOINT: dict[str, tuple[Callable[[Path], None], str]] = {
    "weights-fifo": (_fifo, "weights file is not a regular file"),
    "weights-link-to-dev-zero": (
        lambda r: (
            weights_path(r, final_step(r)).unlink(),
            weights_path(r, final_step(r)).symlink_to("/dev/zero"),
        ),
        "weights file is not a regular file",
    ),
    "sidecar-binary": (
        lambda r: sidecar_path(r, final_step(r)).write_bytes(b"\x00\xff\xfe"),
        "corrupt sidecar (not UTF-8 text)",
    ),
    "sidecar-missing-hash": (
        lambda r: sidecar_path(r, final_step(r)).write_text(json.dumps({"step": final_step(r)})),
        "corrupt sidecar (needs `step`",
    ),
    "sidecar-directory": (
        lambda r: (sidecar_path(r, final_step(r)).unlink(), sidecar_path(r, final_step(r)).mkdir()),
        "sidecar is not a regular file",
    ),
    "weights-half-precision": (
        lambda r: rewrite_checkpoint(
            r, final_step(r), lambda s: {k: v.half() for k, v in s.items()}
        ),
        "is torch.float16, the model needs torch.float32",
    ),
    "weights-wrong-shape": (
        lambda r: rewrite_checkpoint(
            r, final_step(r), lambda s: {**s, "pos_embed.weight": s["pos_embed.weight"][:-1]}
        ),
        "does not fit the model",
    ),
    "weights-nan": (
        lambda r: rewrite_checkpoint(
            r,
            final_step(r),
            lambda s: {**s, "ln_final.bias": torch.full_like(s["ln_final.bias"], float("nan"))},
        ),
        "holds NaN or Inf values",
    ),
}


def judged(run_dir: Path, text: str = SPEC):
    plan = compile_spec(parse(text, "hostile.hyp"), text, None)
    return {c.name: c for c in run_study(plan, [run_dir]).claims}


@pytest.mark.parametrize("case", sorted(BREAK_FINAL_CHECKPOINT))
def test_a_broken_checkpoint_makes_only_its_claims_unsupported(run_copy, case):
    damage, message = BREAK_FINAL_CHECKPOINT[case]
    damage(run_copy)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(judged(run_copy)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "reading the broken checkpoint hung"
    claims = result[0]
    assert claims["at_first"].verdict == "supported"
    assert claims["at_final"].verdict == "unsupported"
    assert message in claims["at_final"].reason, claims["at_final"].reason


# --- verdicts that cannot be trusted are not given ------------------------------------------


def test_a_probe_too_small_for_a_bootstrap_is_unsupported_not_supported(tiny_run):
    text = SPEC.replace("n 48 seed 0", f"n {MIN_SEQUENCES - 1} seed 0")
    claims = judged(tiny_run, text)
    for claim in claims.values():
        assert claim.verdict == "unsupported"
        assert f"probe `iid` has {MIN_SEQUENCES - 1} sequence(s)" in claim.reason
    enough = judged(tiny_run, SPEC.replace("n 48 seed 0", f"n {MIN_SEQUENCES} seed 0"))
    assert enough["at_final"].verdict == "supported"


def test_resample_ablation_on_one_sequence_is_an_error_not_a_no_op(tiny_run):
    text = SPEC.replace("n 48 seed 0", "n 1 seed 0").replace(
        "loss < 100", "accuracy with ablate(L0.H0, resample) <= 1"
    )
    reason = judged(tiny_run, text)["at_final"].reason
    assert "resample ablation needs a probe of at least 2 sequences" in reason


def test_division_by_zero_and_infinite_bounds_are_named(tiny_run):
    text = SPEC.replace("loss < 100", "accuracy / (accuracy - accuracy) > 0").replace(
        "accuracy < 0.5", "accuracy < 1e300 * 1e300"
    )
    claims = judged(tiny_run, text)
    assert claims["at_final"].verdict == "unsupported"
    assert "division by zero: `(accuracy - accuracy)` is 0" in claims["at_final"].reason
    assert claims["at_first"].verdict == "unsupported"
    assert "the right side `(1e+300 * 1e+300)` is inf" in claims["at_first"].reason


def test_activations_that_overflow_make_the_claims_that_read_them_unsupported(run_copy):
    # Finite weights whose LayerNorm variances overflow float32: the logits stay finite (each
    # LayerNorm returns its bias), so only a check of the activations catches it.
    rewrite_checkpoint(
        run_copy, final_step(run_copy),
        lambda s: {**s, "embed.weight": s["embed.weight"] * 1e20},
    )  # fmt: skip
    text = SPEC.replace("loss < 100", "accuracy with ablate(L1.H0, zero) <= 1")
    claims = judged(run_copy, SPEC) | {"ablated": judged(run_copy, text)["at_final"]}
    assert claims["at_first"].verdict == "supported"
    for name in ("at_final", "ablated"):
        assert claims[name].verdict == "unsupported", claims[name].reason
        assert "NaN or Inf values at `" in claims[name].reason, claims[name].reason


def test_a_300_term_sum_plans_and_runs(tiny_run):
    total = " + ".join(["loss"] * 300)
    claims = judged(tiny_run, SPEC.replace("loss < 100", f"{total} > 299 * loss"))
    assert claims["at_final"].verdict == "supported", claims["at_final"].reason
    estimate = claims["at_final"].predictions[0].estimate
    single = judged(tiny_run, SPEC)["at_final"].predictions[0].estimate
    assert estimate == pytest.approx(300 * single, rel=1e-12)


def test_results_hold_no_absolute_path_and_no_tensor_dump(run_copy, tmp_path):
    rewrite_checkpoint(
        run_copy, final_step(run_copy),
        lambda s: {**s, "ln_final.bias": torch.full_like(s["ln_final.bias"], float("inf"))},
    )  # fmt: skip
    report = tmp_path / "report"
    spec = tmp_path / "hostile.hyp"
    spec.write_text(SPEC)
    code, output = cli("run", spec, "--run", run_copy, "--no-cache", "--report", report)
    assert code == 0, output
    text = (report / "hostile.json").read_text()
    assert str(tmp_path) not in text and "tensor(" not in text
    assert "holds NaN or Inf values" in text
