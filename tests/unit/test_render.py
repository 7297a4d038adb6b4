"""The terminal output, rendered to text at 80 columns: the summary and `-v` details."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from runner.report.diff import load_results
from runner.report.figures import claim_figure
from runner.report.terminal import claim_details, claim_source, series_table, summary_table
from runner.stats.results import RunVerdict

ROOT = Path(__file__).resolve().parents[2]
DEMO = load_results(ROOT / "reports" / "demo.json")
SPEC_TEXT = (ROOT / "specs" / "demo.hyp").read_text()


def render(renderable, width: int = 80) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


def test_the_summary_fits_80_columns_and_names_every_claim():
    seconds = {c.name: 0.25 * i for i, c in enumerate(DEMO.claims)}
    text = render(summary_table(DEMO, seconds))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if "claim" in line and "verdict" in line)
    for column in ("estimate", "threshold", "time"):
        assert column in header
    body = "\n".join(lines)
    for claim in DEMO.claims:
        assert claim.name in body  # names are never folded at this width
        row = next(line for line in lines if f" {claim.name} " in line)
        assert claim.verdict.capitalize() in row
        assert f"{seconds[claim.name]:.1f} s" in row
    counts = DEMO.counts()
    assert f"Supported: {counts['supported']}  Negative: {counts['negative']}" in body
    learns = next(line for line in lines if " learns_iid " in line)
    first = next(c for c in DEMO.claims if c.name == "learns_iid").predictions[0]
    assert f"{first.estimate:.3g} [{first.interval.low:.3g}" in learns


def test_the_summary_without_times_has_no_time_column():
    lines = render(summary_table(DEMO)).splitlines()
    header = next(line for line in lines if "claim" in line and "verdict" in line)
    assert "threshold" in header and "time" not in header


@pytest.mark.parametrize("name", ["learns_iid", "breakout_rises", "attention_first"])
def test_verbose_details_show_the_spec_text_series_and_reason(name: str):
    claim = next(c for c in DEMO.claims if c.name == name)
    text = render(claim_details(claim, SPEC_TEXT))
    assert max(len(line) for line in text.splitlines()) <= 80
    # the claim as written, with its line numbers
    assert f"{claim.line} claim {name}" in text
    closing = claim.line + 1 + len(claim.predictions)
    assert f"{closing} }}" in text
    for pred in claim.predictions:
        assert pred.verdict.capitalize() in text
        assert pred.reason.split(";")[0][:30] in text.replace("\n", " ")
        for point in pred.series[:1]:
            assert str(point.step) in text


def test_a_long_series_keeps_its_ends_and_says_how_many_are_shown():
    breakout = next(c for c in DEMO.claims if c.name == "breakout_rises").predictions[0]
    text = render(series_table(breakout.series))
    rows = [line.split() for line in text.splitlines()]
    steps = [int(row[0]) for row in rows if row and row[0].isdigit() and "of" not in row]
    assert steps[0] == breakout.series[0].step and steps[-1] == breakout.series[-1].step
    assert f"8 of {len(breakout.series)} checkpoints shown" in text


def test_claim_source_stops_at_the_closing_brace():
    text = 'claim a "x" {\n  at final: loss < 1\n}\nclaim b "y" pending\n'
    assert claim_source(text, 1) == 'claim a "x" {\n  at final: loss < 1\n}'
    assert claim_source(text, 4) == 'claim b "y" pending'


def test_every_demo_claim_and_a_seed_matrix_claim_draw_a_png():
    for claim in DEMO.claims:
        png = claim_figure(claim)
        assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    first = DEMO.claims[1]
    matrix = first.model_copy(
        update={
            "predictions": (),
            "runs": tuple(
                RunVerdict(
                    run=f"seed-{i}", verdict="supported", reason="r", predictions=first.predictions
                )
                for i in range(3)
            ),
        }
    )
    assert claim_figure(matrix) is not None
    pending = first.model_copy(update={"pending": True, "predictions": ()})
    assert claim_figure(pending) is None
