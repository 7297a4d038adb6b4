"""pytest plugin: `pytest specs/` collects `.hyp` files, one test item per claim.

A spec's study runs once, when its first claim is tested (the multiplicity correction covers
every claim of the study, so a claim's verdict does not depend on `-k`). An item passes when its
claim's verdict is what is expected of it: its `expect`, else the baseline's (`--hypo-baseline`),
else Supported; Unsupported in the baseline and Supported now passes with a warning (see
`runner.report.gate`). A `pending` claim is skipped as a next test. `mark NAME` in a spec puts
the pytest mark NAME on each of its claims, so `-m` selects specs; `-k` selects claims by name.
A spec error is that file's collection error; a run that cannot be found or read fails that
spec's claims with its one line, and the other specs still run.

Registered through the `pytest11` entry point in pyproject.toml, so installing hypodsl is enough.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hypodsl.errors import UserError

if TYPE_CHECKING:
    from hypodsl.plan import ClaimPlan, Plan
    from runner.report.gate import Baseline, Check
    from runner.stats.results import ClaimResult, StudyResult


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hypodsl", "hypodsl: claims of .hyp specs as tests")
    group.addoption(
        "--hypo-run",
        metavar="DIR",
        help="run directory for every spec (default: each spec's `run` or `runs`)",
    )
    group.addoption(
        "--hypo-baseline",
        metavar="FILE",
        help="expected verdicts of claims without `expect` (written by "
        "`hypo run --baseline FILE --update-baseline`)",
    )
    group.addoption(
        "--hypo-jobs", type=int, default=1, metavar="N", help="checkpoints measured in parallel"
    )
    group.addoption("--hypo-seed", type=int, default=0, metavar="N", help="bootstrap seed")
    group.addoption("--hypo-threads", type=int, default=None, metavar="N", help="torch CPU threads")
    group.addoption(
        "--hypo-cache-dir",
        metavar="DIR",
        help="measurement cache shared with `hypo run` (default $HYPODSL_CACHE or .hypo-cache)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hypodsl: a claim of a .hyp spec (added to every claim)")
    run = config.getoption("hypo_run")
    if run and not Path(run).is_dir():  # as `hypo run --run`: refused before anything runs
        raise pytest.UsageError(f"--hypo-run {run}: no such run directory")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".hyp":
        return SpecFile.from_parent(parent, path=file_path)
    return None


class SpecProblem(Exception):
    """A spec, run or baseline that cannot be used; shown as its message, never a traceback."""


class ClaimMissed(Exception):
    def __init__(self, check: Check, claim: ClaimResult):
        super().__init__(check.message)
        self.check, self.claim = check, claim


class SpecFile(pytest.File):
    """A `.hyp` spec: compiled at collection, run (once) when its first claim is tested."""

    plan: Plan
    run_dirs: list[Path]
    _result: StudyResult | None = None
    _failure: str | None = None

    def collect(self) -> Iterator[ClaimItem]:
        self.plan, self.run_dirs = self._compile()
        for claim in self.plan.claims:
            item = ClaimItem.from_parent(self, name=claim.name, claim=claim)
            item.add_marker("hypodsl")
            for mark in self.plan.marks:
                item.add_marker(mark)
            yield item

    def _compile(self) -> tuple[Plan, list[Path]]:
        """As `hypo run` does: the spec compiled against its run's signature; a file without
        claims has no run to resolve. A spec error is this file's collection error; a run that
        cannot be found or read fails this spec's claims with its one line (set as
        `_failure`), so the other specs of the session still run."""
        from hypodsl.cli_common import SpecError, load_plan
        from hypodsl.cli_run import compile_against_run

        spec = Path(self._display_path())
        try:
            plan = load_plan(spec, None)
        except (SpecError, UserError) as e:  # file:line:col, or a file that cannot be read
            raise SpecProblem(str(e)) from None
        if not plan.claims:
            return plan, []
        try:
            return compile_against_run(spec, plan, self.config.getoption("hypo_run"))
        except SpecError as e:  # the spec does not fit its run's model
            raise SpecProblem(str(e)) from None
        except UserError as e:
            self._failure = str(e)
            return plan, []

    def _display_path(self) -> str:
        try:
            return self.path.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return str(self.path)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> Any:
        if isinstance(excinfo.value, SpecProblem):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def result(self) -> StudyResult:
        """The study's result, run on the first call."""
        if self._failure is not None:
            raise SpecProblem(self._failure)
        if self._result is None:
            from runner.engine.cache import default_dir
            from runner.engine.study import run_study

            config = self.config
            cache_dir = config.getoption("hypo_cache_dir")
            try:
                self._result = run_study(
                    self.plan,
                    self.run_dirs,
                    seed=config.getoption("hypo_seed"),
                    jobs=max(1, config.getoption("hypo_jobs")),
                    threads=config.getoption("hypo_threads"),
                    cache_dir=Path(cache_dir) if cache_dir else default_dir(),
                )
            except UserError as e:  # a run, config or checkpoint that cannot be used
                self._failure = f"{self._display_path()}: {e}"
                raise SpecProblem(self._failure) from None
        return self._result


def _baseline(config: pytest.Config) -> Baseline:
    """The --hypo-baseline file, read once per session."""
    from runner.report.gate import Baseline, BaselineError

    cached = getattr(config, "_hypodsl_baseline", None)
    if cached is not None:
        return cached
    option = config.getoption("hypo_baseline")
    try:
        baseline = (
            Baseline.load(config.invocation_params.dir / option) if option else Baseline.empty()
        )
    except BaselineError as e:
        raise SpecProblem(str(e)) from None
    config._hypodsl_baseline = baseline  # type: ignore[attr-defined]
    return baseline


class ClaimItem(pytest.Item):
    """One claim: passes when its verdict is the expected one."""

    parent: SpecFile

    def __init__(self, *, claim: ClaimPlan, **kwargs: Any):
        super().__init__(**kwargs)
        self.claim = claim

    def runtest(self) -> None:
        from runner.report.gate import FAILING, check_claim

        if self.claim.pending:
            pytest.skip("Next test: a pending claim is stated, not run")
        result = self.parent.result()
        claim = next(c for c in result.claims if c.name == self.claim.name)
        spec = self.parent.path.stem
        check = check_claim(spec, claim, _baseline(self.config).specs.get(spec, {}))
        assert check is not None
        if check.status == "improved":
            warnings.warn(check.message, UserWarning, stacklevel=1)
        if check.status in FAILING:
            raise ClaimMissed(check, claim)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> Any:
        if isinstance(excinfo.value, SpecProblem):
            return str(excinfo.value)
        if isinstance(excinfo.value, ClaimMissed):
            return failure_text(self.parent._display_path(), excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.claim.source.line - 1, f"claim {self.claim.name}"


def failure_text(spec: str, missed: ClaimMissed) -> str:
    """The claim's line, its verdict against the expectation, and the evidence for it."""
    from runner.report.terminal import estimate_text, num

    claim, check = missed.claim, missed.check
    by = {"expect": "its `expect`", "baseline": "the baseline", "default": "default"}
    lines = [
        f'{spec}:{claim.line}: claim {claim.name} "{claim.statement}"',
        f"verdict: {claim.verdict.capitalize()}, expected {check.expected.capitalize()} "
        f"(by {by[check.source]})",
        f"reason: {claim.reason}",
    ]
    for pred in claim.predictions:
        threshold = "—" if pred.threshold is None else num(pred.threshold)
        lines += [
            f"  {spec}:{pred.line}: {pred.text}",
            f"    {pred.verdict.capitalize()}: estimate {estimate_text(pred)}, "
            f"right side {threshold}, n {pred.n} ({pred.n_sequences} sequences)",
            f"    {pred.reason}",
        ]
    for run in claim.runs:
        lines.append(f"  run {run.run}: {run.verdict.capitalize()} — {run.reason}")
    return "\n".join(lines)
