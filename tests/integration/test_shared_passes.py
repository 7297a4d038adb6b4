"""The engine's shared passes (stacked edited runs, stacked gradients, the answers-only pass of
probes whose quantities read only the logits) against measuring every quantity on its own, for a
study of every intervention and gradient kind on the tiny run: the same verdicts, and results
equal up to float rounding (`tests.numerics.assert_results_equivalent`; on some processors
byte-identical, but no CPU library promises that for computations over other shapes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine import sources
from runner.engine.study import run_study
from runner.measure import batched, quantities
from tests.numerics import assert_results_equivalent

pytestmark = pytest.mark.numerics  # run again under other CPU kernels (Makefile)

SPEC = """study "shared passes"
probe iid = split test_iid n 48 seed 0
probe held = split heldout n 48 seed 0
probe grad = split test_iid n 16 seed 1
correction none
window late = 20 ..
path h0 = L0.H0 -> unembed
path h1 = L1.H1 -> unembed
path qk = L1.H0[answer <- match_value] -> L1.mlp -> unembed
path mlp = L0.mlp -> unembed
circuit both = h0 + h1

claim ablations "every ablation method and target" {
  at final on iid: accuracy with ablate(L0.H0, zero) < 2
  at final on iid: margin with ablate(L1.H1, mean) < 100
  at final on iid: loss with ablate(L1.mlp, resample) < 100
  at final on iid: margin with ablate(L0.mlp[1, 5, 9], mean) < 100
  at final on iid: margin with ablate(embed, mean) and ablate(L1.H0, zero) < 100
  at final on iid: margin with ablate(pos, zero) < 100
  over late (mean) on iid: margin with ablate(L1.H0, mean) < 100
}

claim patches "patches from a probe and from checkpoints" {
  at final on iid: margin with patch(L1.H0, from=held) < 100
  at 20 on iid: margin with patch(L0.mlp, from=final) < 100
  at final on iid: margin with patch(L0.H1, from=20) and ablate(L0.mlp, mean) < 100
  at final on iid: share(qk) < 100
  over late (mean) on iid: margin with patch(L0.H1, from=20) < 100
}

claim gradients "alignment and update alignment of several targets" {
  over late (mean) on iid: alignment(h0) > -1000
  over late (mean) on iid: alignment(both) > alignment(h1) - 1000
  at 20 on iid: alignment(qk) > -1000
  at 20 on iid: update_alignment(h0) > -1000
  at 20 on iid: update_alignment(mlp) > update_alignment(qk) - 1000
}

claim logits_only "probes whose quantities read only the logits, or run their own passes" {
  over late (mean) on held: margin > -100
  at final on held: accuracy + loss > -100
  at 20 on grad: alignment(h0) > -1000
}

claim births "a birth of an intervened quantity" {
  birth(margin with ablate(L0.H0, mean) < margin + 1) before birth(accuracy > 0.01) on iid
}
"""


def test_shared_passes_give_the_results_of_one_pass_per_quantity(tiny_run: Path, tmp_path: Path):
    plan = compile_spec(parse(SPEC, "shared.hyp"), SPEC, None)
    results = {}
    for shared in (True, False):
        result = run_study(
            plan, [tiny_run], cache_dir=tmp_path / str(shared), trajectories=True,
            shared_passes=shared,
        )  # fmt: skip
        results[shared] = result.model_dump_json(indent=2)
        assert all("not evaluable" not in c.reason for c in result.claims), result.claims
    assert_results_equivalent(results[True], results[False])


def test_a_patch_source_runs_once_for_every_checkpoint_it_is_patched_into(
    tiny_run: Path, tmp_path: Path
):
    """`sources.STORE` keeps another checkpoint's activation between checkpoints: two sources
    (two sites of step 20), each computed once, for a window of checkpoints and a figure."""
    spec = (
        SPEC.split("claim ")[0]
        + """claim p "patches from step 20" {
  over late (mean) on iid: margin with patch(L0.H1, from=20) < 100
  at final on iid: margin with patch(L0.mlp, from=20) < 100
}
"""
    )
    plan = compile_spec(parse(spec, "sources.hyp"), spec, None)
    before = sources.STORE.computed
    result = run_study(plan, [tiny_run], cache_dir=tmp_path, trajectories=True)
    assert len(result.claims[0].predictions[1].trajectories[0].points) > 1  # a figure drew it
    assert sources.STORE.computed - before == 2


def test_the_loss_gradient_comes_from_the_answers_pass_of_a_logits_only_probe(
    tiny_run: Path, tmp_path: Path, monkeypatch
):
    """On a probe whose quantities read only the logits, `alignment`'s loss gradient is taken
    through the graph of the answers-only pass that gave the logits and their finiteness check:
    one pass, not a second one of its own (the results equal the unshared path's above)."""
    spec = (
        SPEC.split("claim ")[0]
        + """claim g "alignment on a logits-only probe" {
  at 20 on grad: alignment(h0) > -1000
  at 20 on grad: accuracy > -1
}
"""
    )
    plan = compile_spec(parse(spec, "descent.hyp"), spec, None)
    passes: list[bool] = []
    answer_pass = batched.answer_pass

    def counted(*args, **kwargs):
        passes.append(kwargs.get("keep_graph", False))
        return answer_pass(*args, **kwargs)

    monkeypatch.setattr(batched, "answer_pass", counted)
    held = []  # no quantity is measured while the pass's graph is held: it is freed in prefetch
    measure = quantities.measure
    monkeypatch.setattr(
        quantities, "measure", lambda ctx, q: held.append(ctx._graph_logits) or measure(ctx, q)
    )
    result = run_study(plan, [tiny_run], cache_dir=tmp_path)
    assert [p.verdict for p in result.claims[0].predictions] == ["supported", "supported"]
    assert passes == [True]
    assert held == [None, None]
