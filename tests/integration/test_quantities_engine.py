"""Every implemented quantity, end to end through the engine, against the library directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hypodsl import plan as p
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.study import load_probes, run_plan
from runner.measure import attention
from runner.measure import interventions as iv
from runner.measure.paths import PathPatcher, path_names
from runner.measure.probe import ProbeBatch, clean_run
from runner.model.checkpoints import load_model
from runner.model.rundir import read_config

SPEC = """study "quantities"
probe iid = split test_iid n 32 seed 0
probe cf = split counterfactual n 32
path direct = L1.H0 -> unembed
path restricted = L1.H0[answer <- match_value] -> unembed
path k_comp = L0.H1 -> L1.H0.k
circuit both = direct + k_comp
claim looks "L1.H0 attends somewhere" {
  at final on iid: attention(L1.H0, from=answer, to=match_value) > 0.9
  at final on iid: qk_gap(L1.H0, from=answer, to=match_value, contrast=stale_value) > 0
  at final on iid: ov_copy(L1.H0) >= 0
}
claim carries "Paths carry margin" {
  at final on iid: contribution(direct) > -1000
  at final on iid: contribution(restricted) > -1000
  at final on iid: contribution(both) > -1000
}
claim ablations "Ablations and patches run" {
  at final on iid: accuracy with ablate(L1.H0, zero) <= accuracy
  at final on iid: margin with ablate(L0.mlp[1, 2], mean) and ablate(L1.H1, resample) < 1000
  at final on iid: accuracy with patch(L1.H0, from=cf) < 2
  at final on iid: accuracy with patch(L1.H0, from=20) < 2
}
claim gradients "Gradient quantities run" {
  at 20 on iid: alignment(direct) > -1000
  at 20 on iid: update_alignment(direct) > -1000
  at 20 on iid: gram(by=key) > -1000
}
claim last "No update follows the last checkpoint" {
  at final on iid: update_alignment(direct) > 0
}
"""


def test_every_quantity_is_evaluated_and_agrees_with_the_library(tiny_run: Path):
    plan = compile_spec(parse(SPEC, "q.hyp"), SPEC, None)
    result = run_plan(plan, tiny_run)
    by_name = {c.name: c for c in result.claims}
    for name in ("looks", "carries", "ablations", "gradients"):
        for pred in by_name[name].predictions:
            assert pred.verdict != "unsupported", (pred.text, pred.reason)
    last = by_name["last"]
    assert last.verdict == "unsupported" and "last checkpoint" in last.reason

    config = read_config(tiny_run)
    model = load_model(tiny_run, config.steps, config.model)
    probe = ProbeBatch.from_split(load_probes(tiny_run, [plan.probe("iid")])["iid"])
    with torch.no_grad():
        run = clean_run(model, probe, path_names(model))
        mass = attention.attention_mass(run, probe, 1, 0, "answer", "match_value")
        direct = PathPatcher(model, probe, run).contribution(
            [p.HeadNode(layer=1, head=0), p.UnembedNode()]
        )
        site = iv.site_of(p.HeadNode(layer=1, head=0))
        ablated = iv.run_edited(model, probe, [iv.replace_edit(site, torch.zeros(1), probe)])
    looks = by_name["looks"].predictions
    carries = by_name["carries"].predictions
    ablations = by_name["ablations"].predictions
    assert np.isclose(looks[0].estimate, mass.double().mean().item(), rtol=1e-6)
    assert np.isclose(carries[0].estimate, direct.double().mean().item(), rtol=1e-6)
    accuracy = ablated.behaviour(probe)["accuracy"].double().mean().item()
    assert np.isclose(ablations[0].estimate, accuracy)
