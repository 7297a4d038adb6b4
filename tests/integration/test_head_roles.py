"""Roles: a `select ... heads top 1` binds the head that does a job in each run, whatever its
id. Planted "seeds": the planted circuit with its layer-1 heads in another order, so that the
retrieval head is L1.H0 in some runs and L1.H1 in others. The role finds it in every run (the
selection is recorded per run), the role's claims hold in every run, and the claim that names
`L1.H0` holds only where the planted head is L1.H0."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.run_globs import matching_runs
from runner.engine.selections import head_name
from runner.engine.study import run_study
from runner.model.checkpoints import read_sidecar, save_checkpoint
from runner.model.planted import CONFIG, planted_model
from runner.report.ledger import render_markdown
from tests.conftest import SMALL_DATA
from tests.integration.planted_features import write_planted_run

RETRIEVER = {"seed-a": 0, "seed-b": 1, "seed-c": 1, "seed-d": 0}  # the planted head's id

SPEC = """study "planted roles"
runs planted = "{runs}/seed-*"
probe iid = split test_iid n 48 seed 0
probe pick = split val_iid n 48 seed 0

select retriever = L1 heads top 1 by attention(from=answer, to=match_value) over 0 .. 10 on pick

claim role_attends "The retrieval role attends from the read to the matching value" {{
  at final on iid: attention(retriever, from=answer, to=match_value) > 0.9
}}
claim role_needed "Mean-ablating the retrieval role breaks retrieval" {{
  at final on iid: accuracy with ablate(retriever, mean) < accuracy - 0.5
}}
claim role_writes "The role's direct path carries the margin" {{
  at final on iid: contribution(retriever -> unembed) > 1
}}
claim same_head "L1.H0 is the retrieval head in every run" {{
  at final on iid: attention(L1.H0, from=answer, to=match_value) > 0.9
}}
"""


def swap_heads(model: torch.nn.Module, layer: int) -> None:
    """Exchange heads 0 and 1 of a layer: the same function, the other ids."""
    attn = model.block(layer).attn
    dh, d = CONFIG.d_head, CONFIG.d_model
    order = torch.cat([torch.arange(dh, 2 * dh), torch.arange(0, dh)])
    rows = torch.cat([order + part * d for part in range(3)])  # q | k | v
    with torch.no_grad():
        attn.c_attn.weight.copy_(attn.c_attn.weight[rows])
        attn.c_attn.bias.copy_(attn.c_attn.bias[rows])
        attn.c_proj.weight.copy_(attn.c_proj.weight[:, order])


@pytest.fixture(scope="module")
def planted_seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("roles")
    for name, head in RETRIEVER.items():
        run = write_planted_run(root / name, SMALL_DATA)
        model = planted_model()
        if head == 1:
            swap_heads(model, 1)
        for step in (0, 10):
            sidecar = read_sidecar(run, step)
            meta = {k: v for k, v in sidecar.items() if k not in ("step", "sha256")}
            save_checkpoint(run, step, model, meta)
    return root


def test_swapping_heads_keeps_the_function(planted_seeds: Path):
    model, swapped = planted_model(), planted_model()
    swap_heads(swapped, 1)
    tokens = torch.randint(0, CONFIG.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(swapped(tokens), model(tokens), rtol=0, atol=1e-4)


def test_a_role_binds_the_planted_head_in_every_run(planted_seeds: Path, tmp_path: Path):
    text = SPEC.format(runs=planted_seeds)
    plan = compile_spec(parse(text, "roles.hyp"), text, None)
    result = run_study(plan, matching_runs(plan, planted_seeds), cache_dir=tmp_path)
    bound = {
        run.run: head_name(run.selections[0].members[0], CONFIG.n_heads)
        for run in result.provenance.runs
    }
    assert bound == {name: f"L1.H{head}" for name, head in RETRIEVER.items()}
    by_name = {c.name: c for c in result.claims}
    for name in ("role_attends", "role_needed", "role_writes"):
        claim = by_name[name]
        assert [r.verdict for r in claim.runs] == ["supported"] * 4, (name, claim.runs)
        assert claim.verdict == "supported", (name, claim.reason)
    same = {r.run: r.verdict for r in by_name["same_head"].runs}
    assert same == {n: "supported" if h == 0 else "negative" for n, h in RETRIEVER.items()}
    ledger = render_markdown(result)
    for name, head in RETRIEVER.items():
        assert f"| {name} | retriever | heads of L1 | pick | 0 .. 10 | 1 | L1.H{head} |" in ledger
