"""User text on the terminal and in Markdown: escape sequences never reach either raw, Rich
markup prints literally, and a `|`, backtick, `<` or newline cannot restructure a report."""

from __future__ import annotations

import io
from pathlib import Path

import markdown
import pytest
from rich.console import Console

from hypodsl.escape import for_markdown, for_terminal, markdown_code
from runner.report.diff import load_results
from runner.report.ledger import render_markdown
from runner.report.terminal import claim_details, gate_table, summary_table

ROOT = Path(__file__).resolve().parents[2]
DEMO = load_results(ROOT / "reports" / "demo.json")

HOSTILE = [
    "\x1b[2J",
    "\x1b]8;;http://x\x07click\x1b]8;;\x07",
    "a\u202ereversed",
    "bell\x07",
    "nul\x00byte",
    "del\x7f",
    "\x9bcsi",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_for_terminal_leaves_no_control_character(text):
    shown = for_terminal(text)
    assert all(c.isprintable() for c in shown) and ("\\x" in shown or "\\u" in shown)


def test_for_terminal_keeps_ordinary_text_newlines_and_markup_literally():
    assert for_terminal("[bold]a[/bold]\n\tb é ✓") == "[bold]a[/bold]\n\tb é ✓"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a|b", "a\\|b"),
        ("`code`", "\\`code\\`"),
        ("<script>", "&lt;script>"),
        ("line1\nline2\r\nline3", "line1 line2 line3"),
        ("[click](http://evil)", "\\[click\\](http://evil)"),
        ("back\\slash|", "back\\\\slash\\|"),
        ("\x1b[2J", "\\\\x1b\\[2J"),
    ],
)
def test_for_markdown_escapes_what_would_restructure_a_report(text, expected):
    assert for_markdown(text) == expected


@pytest.mark.parametrize("text", ["plain", "a`b", "``x``", "`", "a|b", "x\ny", "\x1b[2J"])
def test_markdown_code_is_one_code_span_whatever_it_holds(text):
    html = markdown.markdown(f"before {markdown_code(text)} after")
    assert html.count("<code>") == 1 and "\x1b" not in html and "\n" not in markdown_code(text)


def hostile_demo():
    first = DEMO.claims[0]
    evil = first.model_copy(
        update={
            "name": "[bold]x\x1b[2J",
            "statement": "a | b\n# heading <img src=x> `tick` \x1b]8;;http://x\x07",
            "reason": "reads `file`: \x1b[31mred | cell\nnext",
        }
    )
    return DEMO.model_copy(update={"study": "study\x1b[2J [red]title", "claims": (evil,)})


def render(renderable) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None, markup=False)
    console.print(renderable)
    return console.file.getvalue()


def test_terminal_renderables_escape_names_statements_and_reasons():
    result = hostile_demo()
    for text in (render(summary_table(result)), render(claim_details(result.claims[0]))):
        assert "\x1b" not in text and "\x07" not in text
        assert "\\x1b" in text
    assert "[bold]x" in render(summary_table(result))  # markup printed literally


def test_the_gate_table_escapes_claims_and_reasons():
    from runner.report.gate import Check

    fields = set(Check.__dataclass_fields__) if hasattr(Check, "__dataclass_fields__") else set()
    if not fields:
        pytest.skip("Check is not a dataclass")
    values = {f: "x\x1b[2J" for f in fields} | {"expected": "supported", "verdict": "negative"}
    values |= {"line": 3} if "line" in fields else {}
    text = render(gate_table([Check(**values)]))
    assert "\x1b" not in text


def test_the_ledger_escapes_user_text_and_keeps_its_tables_whole():
    md = render_markdown(hostile_demo())
    assert "\x1b" not in md and "\x07" not in md
    assert "\n# heading" not in md and "&lt;img" in md
    html = markdown.markdown(md, extensions=["tables"])
    assert "<img" not in html and "<p>|" not in html


def test_the_demo_ledger_is_unchanged_where_its_text_is_plain():
    md = render_markdown(DEMO)
    for claim in DEMO.claims:
        assert f"## {claim.name}\n" in md or "\\" in claim.name


def test_cli_errors_print_escapes_not_sequences(capsys, tmp_path):
    from hypodsl.cli import main

    spec = tmp_path / "a\x1b[2J.hyp"
    code = main(["check", str(spec)])
    err = capsys.readouterr().err
    assert code == 2 and "\x1b" not in err and "\\x1b[2J" in err


def test_a_report_path_with_escapes_prints_escaped(capsys, tmp_path):
    from hypodsl.cli import main

    code = main(["schema", "--out", str(tmp_path / "x\x1b]8;;http://x\x07" / "s.json")])
    out = capsys.readouterr()
    assert code == 0 and "\x1b" not in out.out + out.err
