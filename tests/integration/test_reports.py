"""Reports on the tiny run: the Markdown ledger renders (tables, links, figures that open), the
trajectories drawn in figures agree with what the tests measured, and the files are stable."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import markdown
import pytest
from PIL import Image

from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.study import run_study
from runner.model.checkpoints import weights_path
from runner.report.files import write_reports
from runner.report.ledger import anchor
from tests.numerics import assert_results_equivalent

SPEC = """study "ledger"
probe iid = split test_iid n 48 seed 0
probe held = split heldout n 48 seed 0
correction none
window every = 0 ..
window late = 20 ..

claim low_loss "The final loss is below 5.5" {
  at final on iid: loss < 5.5
}
claim bounded "Loss stays below 6 | everywhere" {
  over every (all) on iid: loss < 6
}
claim late_mean "Late loss is below 6 on average" {
  over late (mean) on iid: loss < 6
}
claim held_vs_iid "Heldout loss is no lower than IID loss" {
  at final on iid: loss on held > loss - 1
}
claim ablation_small "Ablating L1.H0 moves accuracy by under 0.5" {
  at final on iid: |accuracy with ablate(L1.H0, mean) - accuracy| < 0.5
}
claim births "Loss under 5.3 comes before loss under 4.95" {
  birth(loss < 5.3) before birth(loss < 4.95) on iid
}
claim later "Stated, not yet testable" pending
claim why_later "Stated, with why it waits" pending "no quantity for it yet"
"""


def study(run: Path, tmp_path: Path, **options):
    spec = tmp_path / "ledger.hyp"
    spec.write_text(SPEC)
    plan = compile_spec(parse(SPEC, str(spec)), SPEC, None)
    return spec, run_study(plan, [run], **options)


class Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.headings: list[str] = []
        self.tables = 0
        self._heading = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])
        elif tag == "table":
            self.tables += 1
        self._heading = tag in ("h1", "h2")

    def handle_data(self, data: str) -> None:
        if self._heading:
            self.headings.append(data)
            self._heading = False


def test_the_ledger_renders_to_html_with_tables_links_and_figures(tiny_run: Path, tmp_path):
    spec, result = study(tiny_run, tmp_path, trajectories=True)
    out = tmp_path / "reports"
    written = write_reports(result, out, "ledger", spec)
    text = written.markdown.read_text()
    page = Html()
    page.feed(markdown.markdown(text, extensions=["tables"]))

    run_claims = [c for c in result.claims if not c.pending]
    # legend, summary, and an evidence table per claim that ran
    assert page.tables == 2 + len(run_claims)
    assert "<p>|" not in markdown.markdown(text, extensions=["tables"])  # no broken table
    assert "| Next test |" in text and "**Next test**" in text
    assert "**Next test** — pending: no quantity for it yet" in text
    assert "**Next test** — pending: a next test, not run" in text
    # one figure per claim that ran; every image resolves and opens as a PNG
    assert len(page.images) == len(run_claims) == len(written.figures)
    for src in page.images:
        assert not src.startswith(("/", "http"))
        with Image.open(out / src) as image:
            assert image.format == "PNG" and image.width >= 500 and image.height >= 200
            image.load()
    # summary links land on claim headings; spec links resolve to the spec file
    anchors = {anchor(h) for h in page.headings}
    internal = [h for h in page.links if h.startswith("#")]
    assert len(internal) == len(result.claims)
    assert all(h[1:] in anchors for h in internal)
    spec_links = {h.split("#")[0] for h in page.links if not h.startswith("#")}
    assert spec_links == {"../ledger.hyp"} and (out / "../ledger.hyp").resolve() == spec
    # a `|` in a statement stays inside its cell or quote (escaped, it renders as written)
    assert "> Loss stays below 6 \\| everywhere" in text
    assert "Loss stays below 6 | everywhere" in markdown.markdown(text, extensions=["tables"])


def without_trajectories(predictions):
    return (p.model_copy(update={"trajectories": ()}) for p in predictions)


@pytest.mark.numerics  # measured through other passes: equal up to rounding
def test_trajectories_agree_with_the_tested_values_and_change_nothing_else(tiny_run, tmp_path):
    _, plain = study(tiny_run, tmp_path)
    _, drawn = study(tiny_run, tmp_path, trajectories=True)
    # the trajectories are context: every other field of every claim is the same (measuring
    # more checkpoints may take another pass for a quantity: equal up to float rounding)
    stripped = [
        c.model_copy(update={"predictions": tuple(without_trajectories(c.predictions))})
        for c in drawn.claims
    ]
    assert [c.verdict for c in stripped] == [c.verdict for c in plain.claims]
    for ours, theirs in zip(stripped, plain.claims, strict=True):
        assert_results_equivalent(ours.model_dump_json(), theirs.model_dump_json())
    by_name = {c.name: c for c in drawn.claims}
    # `at final`: its trajectory's last point is the tested estimate and interval
    low = by_name["low_loss"].predictions[0]
    last = low.trajectories[0].points[-1]
    assert last.step == low.step and last.estimate == low.estimate
    assert last.interval == low.interval
    # a window's series is its trajectory restricted to the window
    late = by_name["late_mean"].predictions[0]
    points = {pt.step: pt for pt in late.trajectories[0].points}
    assert all(points[pt.step] == pt for pt in late.series)
    assert len(points) > len(late.series)
    # a birth order draws both conditions
    births = by_name["births"].predictions[0]
    assert [t.label for t in births.trajectories] == ["loss < 5.3", "loss < 4.95"]


def test_a_checkpoint_only_a_figure_reads_leaves_the_verdict_alone(tiny_run: Path, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    weights_path(run, 20).write_bytes(b"corrupt")
    _, result = study(run, tmp_path, trajectories=True)
    low = next(c for c in result.claims if c.name == "low_loss")
    assert low.verdict == "supported"
    steps = [pt.step for pt in low.predictions[0].trajectories[0].points]
    assert 20 not in steps and steps[-1] == low.predictions[0].step
    bounded = next(c for c in result.claims if c.name == "bounded")
    assert bounded.verdict == "unsupported" and "step 20" in bounded.reason


def test_reports_are_byte_identical_and_stale_figures_go(tiny_run: Path, tmp_path: Path):
    spec, result = study(tiny_run, tmp_path, trajectories=True)
    first, second = tmp_path / "a", tmp_path / "b"
    dropped = result.claims[0].name
    fewer = result.model_copy(update={"claims": result.claims[1:]})
    write_reports(fewer, second, "ledger", spec)
    write_reports(result, second, "ledger", spec)
    stale = second / "figures" / "ledger" / f"{dropped}.png"
    assert stale.exists()
    write_reports(fewer, second, "ledger", spec)
    assert not stale.exists()  # a figure this code wrote, for a claim that is gone
    a = write_reports(result, first, "ledger", spec)
    b = write_reports(result, second, "ledger", spec)
    assert a.markdown.read_bytes() == b.markdown.read_bytes()
    assert a.json.read_bytes() == b.json.read_bytes()
    for x, y in zip(a.figures, b.figures, strict=True):
        assert x.name == y.name and x.read_bytes() == y.read_bytes()


def test_without_figures_the_ledger_has_no_images(tiny_run: Path, tmp_path: Path):
    spec, result = study(tiny_run, tmp_path)
    written = write_reports(result, tmp_path / "r", "ledger", spec, figures=False)
    assert written.figures == () and "![" not in written.markdown.read_text()


@pytest.fixture(scope="module")
def committed() -> Path:
    return Path(__file__).resolve().parents[2] / "reports"


def test_the_committed_demo_ledger_renders_and_its_figures_open(committed: Path):
    text = (committed / "demo.md").read_text()
    page = Html()
    page.feed(markdown.markdown(text, extensions=["tables"]))
    assert page.tables >= 2 + 20 and len(page.images) == 20
    for src in page.images:
        with Image.open(committed / src) as image:
            assert image.format == "PNG"
            image.load()
    pngs = sorted((committed / "figures" / "demo").glob("*.png"))
    assert [p.relative_to(committed).as_posix() for p in pngs] == sorted(page.images)
