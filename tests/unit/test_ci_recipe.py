"""The CI recipe in docs/language.md ("Claims in CI") is a workflow that would run: its YAML is
well formed, every `hypo` and `pytest` command in it parses with the real argument parsers, and
every file it reads from the repository (specs, the baseline, the cache key's inputs) exists."""

from __future__ import annotations

import glob
import json
import re
import shlex
from pathlib import Path

import pytest

from hypodsl.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "language.md"


def recipe() -> str:
    section = re.search(r"^### Claims in CI\n(.*?)(?=^##)", DOC.read_text(), flags=re.S | re.M)
    assert section, "docs/language.md has no section `### Claims in CI`"
    blocks = re.findall(r"^```yaml\n(.*?)^```", section.group(1), flags=re.S | re.M)
    assert len(blocks) == 1, "the section holds one ```yaml block"
    return blocks[0]


def shell_lines(yaml_text: str) -> list[str]:
    """The shell of every `run:` (one line, or a `|` block), and commented-out alternatives."""
    lines, out = yaml_text.splitlines(), []
    for i, line in enumerate(lines):
        key = re.match(r"^(\s*)(?:- )?run: ?(.*)$", line)
        if key and key.group(2) not in ("|", ""):
            out.append(key.group(2))
        elif key:  # a block: the lines indented deeper than `run:`
            indent = len(key.group(1))
            for body in lines[i + 1 :]:
                if body.strip() and len(body) - len(body.lstrip()) <= indent:
                    break
                out.append(body.strip())
        elif re.match(r"^\s*# (hypo|pytest) ", line):
            out.append(line.strip()[2:])
    return [x for x in out if x]


def commands(program: str) -> list[list[str]]:
    """Each `program ...` command of the recipe's shell, split as the shell would."""
    found = []
    for line in shell_lines(recipe()):
        for part in re.split(r"\|\||&&|;", line):
            words = shlex.split(part)
            if words and words[0] == program:
                found.append(words[1:])
    return found


def test_the_recipe_is_a_workflow_with_cached_run_and_a_gate():
    text = recipe()
    for key in ("name:", "on:", "jobs:"):
        assert re.search(rf"^{key}", text, flags=re.M), key
    uses = re.findall(r"uses: (\S+)", text)
    assert {"actions/checkout@v4", "actions/setup-python@v5"} <= set(uses)
    assert uses.count("actions/cache@v4") == 2  # the run, and the measurement cache
    assert "\t" not in text  # YAML forbids tabs for indentation
    steps = re.findall(r"^      - ", text, flags=re.M)
    assert len(steps) >= 6
    gate = [a for a in commands("hypo") if a[0] == "run" and "--baseline" in a]
    assert gate, "the recipe gates with `hypo run ... --baseline FILE`"


def test_the_cache_key_reads_files_that_exist():
    patterns = re.findall(r"'([^']+)'", " ".join(re.findall(r"hashFiles\(([^)]*)\)", recipe())))
    assert patterns
    for pattern in patterns:
        assert glob.glob(str(ROOT / pattern), recursive=True), f"hashFiles('{pattern}') is empty"


@pytest.mark.parametrize("argv", commands("hypo"), ids=lambda a: " ".join(a[:2]))
def test_every_hypo_command_parses_and_names_files_that_exist(argv: list[str]):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`hypo {' '.join(argv)}` does not parse")
    for spec in getattr(args, "specs", []):
        assert (ROOT / spec).exists(), spec
    if getattr(args, "baseline", None):
        baseline = json.loads((ROOT / args.baseline).read_text())
        for spec in args.specs:  # the baseline records every spec it gates
            assert Path(spec).stem in baseline["specs"], spec


def test_every_pytest_command_parses_and_names_files_that_exist(pytester: pytest.Pytester):
    found = commands("pytest")
    assert found
    for argv in found:
        config = pytester.parseconfig(*argv)
        assert config.getoption("hypo_baseline") == "reports/baseline.json"
        for path in [*config.args, config.getoption("hypo_baseline")]:
            assert (ROOT / path).exists(), path


def test_the_recipe_is_valid_yaml_where_pyyaml_is_installed():
    yaml = pytest.importorskip("yaml")  # not a dependency; the checks above need none
    workflow = yaml.safe_load(recipe())
    steps = workflow["jobs"]["claims"]["steps"]
    assert sum(1 for s in steps if s.get("uses") == "actions/cache@v4") == 2
    runs = [line.strip() for s in steps for line in s.get("run", "").splitlines()]
    assert [x for x in runs if x] == [
        x for x in shell_lines(recipe()) if not x.startswith("pytest")
    ]
