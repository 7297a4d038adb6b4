"""The README and the docs state only what is true: the make targets and `hypo` commands they
name exist, their links resolve, the README stays short, and user docs record no history.

(`tests/unit/test_docs.py` compiles their ```hyp examples.)
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from hypodsl.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
USER_DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "reports" / "README.md"]
README_MAX_BYTES = 12_000

# History belongs in git, not in a user's guide: no "stop 23", "this session", "issue 16" or
# dates of past runs.
HISTORY = re.compile(r"\bstop \d|\bsessions?\b|\bissue \d|\b\d{4}-\d{2}-\d{2}\b", re.IGNORECASE)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The text outside fenced code blocks, where links are links."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"README.md has no section `## {title}`"
    return match.group(1)


# --- make targets ---------------------------------------------------------------------------


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", _text(ROOT / "Makefile"), flags=re.M))


def readme_make_targets() -> set[str]:
    """`make TARGET` in inline code and at the start of lines of shell blocks."""
    return set(re.findall(r"(?:`|^)make ([a-z][\w-]*)", _text(README), flags=re.M))


def test_the_readme_names_the_make_targets_a_user_needs():
    assert {"demo", "test", "setup", "test-fast", "lint", "fuzz"} <= readme_make_targets()


def test_every_make_target_the_readme_names_exists():
    missing = readme_make_targets() - makefile_targets()
    assert not missing, f"README.md names make targets the Makefile lacks: {sorted(missing)}"


# --- hypo commands --------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def command_table() -> list[str]:
    """The `hypo ...` usages in the first column of the README's command table."""
    rows = [
        line for line in _section(_text(README), "Commands").splitlines() if line.startswith("| `")
    ]
    usages = [re.match(r"\| `(.*?)` \|", row) for row in rows]
    return [u.group(1).replace("\\|", "|") for u in usages if u]


def test_the_command_table_covers_every_subcommand():
    named = {usage.split()[1] for usage in command_table()}
    missing = set(_subcommands(build_parser())) - named
    assert not missing, f"README.md's command table lacks: {sorted(missing)}"


@pytest.mark.parametrize("usage", command_table())
def test_every_command_and_option_in_the_table_exists(usage: str):
    words = usage.split()
    assert words[0] == "hypo", usage
    commands = _subcommands(build_parser())
    assert words[1] in commands, f"`hypo {words[1]}` is not a subcommand"
    parsers = [commands[words[1]]]
    nested = _subcommands(parsers[0])
    if nested:  # `hypo cache info|clear`: each alternative must exist
        names = words[2].split("|")
        unknown = [n for n in names if n not in nested]
        assert not unknown, f"`hypo {words[1]}` has no subcommand {unknown}"
        parsers = [nested[n] for n in names]
    for option in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage):
        for parser in parsers:
            assert option in _options(parser), f"`{usage}`: {option} is not an option"


# --- links ----------------------------------------------------------------------------------


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", _prose(markdown), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def links() -> list[tuple[str, str]]:
    found = []
    for doc in USER_DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(_text(doc))):
            if not re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                found.append((str(doc.relative_to(ROOT)), target))
    return found


@pytest.mark.parametrize(("doc", "target"), links(), ids=[f"{d}->{t}" for d, t in links()])
def test_every_relative_link_resolves(doc: str, target: str):
    path, _, anchor = target.partition("#")
    file = (ROOT / doc).parent / path if path else ROOT / doc
    assert file.exists(), f"{doc} links to {target}, which does not exist"
    if anchor and file.suffix == ".md":
        assert anchor in _anchors(_text(file)), f"{doc} links to {target}: no such heading"


def test_the_readme_indexes_every_doc():
    text = _text(README)
    unlisted = [
        p.name for p in sorted((ROOT / "docs").iterdir()) if f"](docs/{p.name})" not in text
    ]
    assert not unlisted, f"README.md's docs index lacks: {unlisted}"
    assert "](reports/README.md)" in text


# --- size and history -----------------------------------------------------------------------


def test_the_readme_is_short():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/"


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_record_no_history(doc: Path):
    hits = [
        f"{doc.name}:{number}: {line.strip()}"
        for number, line in enumerate(_text(doc).splitlines(), start=1)
        if HISTORY.search(line)
    ]
    assert not hits, "history belongs in git, not in user docs:\n" + "\n".join(hits)


def test_the_history_pattern_catches_what_it_should():
    for line in ["at stop 23", "this session's engine", "Issue 16's target", "on 2026-12-03"]:
        assert HISTORY.search(line), line
    for line in ["the window stops after", "a stopwatch", "issues of float rounding"]:
        assert not HISTORY.search(line), line
