"""Which checkpoints a figure draws: the tested ones, a grid of 6, and (for quantities read off
the clean pass) every checkpoint where the study runs a pass on that probe that gives them
anyway: the full clean pass where a test there reads more than the logits, else the
answers-only pass, which gives only logit quantities."""

from __future__ import annotations

from hypodsl import plan as p
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.measure.quantities import IMPLEMENTED, LINEARISED_MARGIN, reads_cache
from runner.stats.judge import (
    FIGURE_GRID,
    Judge,
    Measured,
    off_the_clean_pass,
    off_the_logits,
    spread,
)

STEPS = list(range(0, 200, 10))  # 20 checkpoints
SPEC = """study "figures"
probe iid = split test_iid n 8
probe held = split heldout n 8
window mid = 50 .. 80
path h = L0.H0 -> unembed
claim free "read off the clean pass" { at 100 on held: accuracy > 0.5 }
claim direct "read off the cached activations" { at 100 on held: contribution(h) > 0 }
claim edited "intervened" { at 100 on iid: accuracy with ablate(L0.H0, zero) < accuracy }
claim grad "a gradient quantity" { over mid (mean) on iid: alignment(L0.H0 -> unembed) > 0 }
"""


def judge() -> Judge:
    plan = compile_spec(parse(SPEC, "f.hyp"), SPEC, None)
    measured = Measured({}, {}, {}, {}, {}, STEPS)
    return Judge(plan, measured, lambda ref: ref.number or STEPS[-1])


def steps_of(j: Judge, name: str, visited=None, quantity: str | None = None) -> set[int]:
    pred = next(c for c in j.plan.claims if c.name == name).predictions[0]
    return {s for s, _, q in j.reads(pred, visited) if quantity is None or q.name == quantity}


def test_spread_keeps_the_ends_and_spaces_the_rest_evenly():
    assert spread(STEPS, FIGURE_GRID) == [0, 40, 80, 110, 150, 190]
    assert spread([5, 6], FIGURE_GRID) == [5, 6]


def test_without_figures_a_prediction_reads_only_what_its_test_needs():
    j = judge()
    assert steps_of(j, "free") == {100}
    assert steps_of(j, "grad") == {50, 60, 70, 80}


def test_a_figure_adds_the_grid_and_free_reads_where_the_probe_is_read_anyway():
    j = judge()
    visited = {(s, "iid"): True for s in STEPS} | {(100, "held"): True}
    grid = set(spread(STEPS, FIGURE_GRID))
    # `held` is read only at 100: the figure adds the grid, no other forward pass on it
    assert steps_of(j, "free", visited) == {100} | grid
    # the clean-pass side of an edited comparison is drawn wherever iid is read; the edited
    # side only where tested and on the grid (a point needs both)
    assert steps_of(j, "edited", visited, "accuracy") == set(STEPS)
    edited_side = {
        s
        for s, _, q in j.reads(
            next(c for c in j.plan.claims if c.name == "edited").predictions[0], visited
        )
        if q.interventions
    }
    assert edited_side == {100} | grid
    assert steps_of(j, "grad", visited) == {50, 60, 70, 80} | grid


def test_gram_is_drawn_only_where_tested_and_paths_that_rerun_the_model_are_not_free():
    text = SPEC + (
        "path key = L0.H0 -> L1.H0.k\n"
        'claim gram_ "gram" { at 100 on iid: gram(by=key) > 0 }\n'
        'claim key_ "a path into a key" { at 100 on iid: contribution(key) > 0 }\n'
    )
    plan = compile_spec(parse(text, "f.hyp"), text, None)
    j = Judge(plan, Measured({}, {}, {}, {}, {}, STEPS), lambda ref: ref.number or STEPS[-1])
    visited = {(s, "iid"): True for s in STEPS}
    assert steps_of(j, "gram_", visited) == {100}
    assert steps_of(j, "key_", visited) == {100} | set(spread(STEPS, FIGURE_GRID))


def test_where_only_the_answers_pass_runs_a_figure_draws_only_logit_quantities_for_free():
    j = judge()
    grid = set(spread(STEPS, FIGURE_GRID))
    held = {(s, "held"): s == 100 for s in range(0, 110, 10)}  # the full pass at 100 only
    assert steps_of(j, "free", held) == set(range(0, 110, 10)) | grid
    assert steps_of(j, "direct", held) == {100} | grid


def test_the_judge_and_the_engine_agree_on_what_reads_only_the_logits():
    for name in (*IMPLEMENTED, LINEARISED_MARGIN):
        q = p.QuantityExpr(name=name)
        if off_the_clean_pass(q):
            assert off_the_logits(q) == (not reads_cache(q)), name
