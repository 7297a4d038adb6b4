"""`hypo run`: evaluate specs, print their verdicts, write reports, gate against a baseline.

Every spec is compiled (against its run's signature) before any is run, so an error costs no
measuring. Exit codes: 0 every verdict as expected; 1 a claim misses its `expect` or, with
`--baseline`, regressed (see runner.report.gate); 2 bad input. Files of shared declarations
(no claims) are skipped, so `hypo run specs/` runs every study under the directory.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text

from hypodsl.cli_common import (
    SpecError,
    UsageError,
    console,
    ensure_writable_dir,
    err_console,
    expand_specs,
    load_plan,
    read_spec,
    set_threads,
)
from hypodsl.escape import for_terminal
from hypodsl.plan import Plan

if TYPE_CHECKING:
    from runner.report.gate import Baseline, Check
    from runner.stats.results import StudyResult


def _run_dirs(run: str | None, spec: Path, plan: Plan) -> list[Path]:
    """--run (from the working directory), else the spec's `run`, else every run its `runs`
    glob matches, each found from the spec's directory upward (`_search_upward`)."""
    from runner.model.rundir import RunError

    if run:
        return [Path(run)]
    if plan.run is not None:
        where, path = f"`run {plan.run.name}`", plan.run.path
        found = _search_upward(spec, path, lambda base: _existing(base / path))
    elif plan.runs is not None:
        from runner.engine.run_globs import runs_under

        where, path = f"`runs {plan.runs.name}`", plan.runs.pattern
        found = _search_upward(spec, path, lambda base: runs_under(plan, base))
    else:
        raise UsageError(f"{spec}: the spec declares no `run` or `runs`; pass --run RUN_DIR")
    if not found:
        raise RunError(
            f"{where}: no {path!r} in {spec.parent.as_posix()}/ or any directory above it"
        )
    return [_shown(p) for p in found]


def _search_upward(spec: Path, path: str, find: Callable[[Path], list[Path]]) -> list[Path]:
    """The rule for a path a spec names (docs/language.md, Running): a relative one is looked
    up from the spec file's directory, then from each directory above it, and the first
    directory from which it names something wins (as git finds `.git`). So `"runs/small"` in
    specs/demo.hyp means ./runs/small whether `hypo` runs in the repository or elsewhere."""
    here = Path(os.path.abspath(spec)).parent
    bases = [here] if Path(path).is_absolute() else [here, *here.parents]
    for base in bases:
        found = find(base)
        if found:
            return found
    return []


def _existing(path: Path) -> list[Path]:
    return [path] if os.path.lexists(path) else []


def _shown(path: Path) -> Path:
    """Relative to the working directory when below it, as messages and reports show it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def compile_for_run(spec: Path, run: str | None) -> tuple[Plan, list[Path]]:
    """The spec compiled against its run's signature, and the run directories to evaluate."""
    plan = load_plan(spec, None)
    if not plan.claims:  # a file of shared declarations, imported by specs
        return plan, []
    return compile_against_run(spec, plan, run)


def compile_against_run(spec: Path, plan: Plan, run: str | None) -> tuple[Plan, list[Path]]:
    """`plan` (the spec compiled alone) compiled again against its run's signature. A run that
    cannot be found or read is a UsageError; a spec that does not fit the run, a SpecError."""
    from runner.model.rundir import RunError, read_signature

    try:
        run_dirs = _run_dirs(run, spec, plan)
        signature = read_signature(run_dirs[0])
    except RunError as e:
        raise UsageError(f"{spec}: {e}") from None
    return load_plan(spec, signature), run_dirs


def run_specs(args: argparse.Namespace) -> int:
    """`hypo run`: see the module docstring for what it prints and returns."""
    from runner.engine.cache import default_dir
    from runner.engine.study import resolve_device
    from runner.model.rundir import RunError
    from runner.report.gate import Baseline, BaselineError

    set_threads(args.threads)
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: expected a positive number of processes")
    if args.ray_address and args.executor != "ray":
        raise UsageError("--ray-address: only with --executor ray")
    if args.executor == "ray" and args.jobs != 1:
        raise UsageError("--jobs: Ray schedules the tasks itself; leave --jobs out")
    if args.update_baseline and not args.baseline:
        raise UsageError("--update-baseline: name the file with --baseline FILE")
    if args.run and not Path(args.run).is_dir():
        raise UsageError(f"--run {args.run}: no such run directory")
    cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_dir()
    if cache_dir is not None:  # output locations are checked before anything is measured
        ensure_writable_dir(
            cache_dir, "--cache-dir" if args.cache_dir else "cache (--no-cache skips it)"
        )
    if args.report:
        ensure_writable_dir(Path(args.report), "--report")
    specs = expand_specs(args.specs)
    stems = [x.stem for x in specs]
    if len(set(stems)) < len(stems):
        raise UsageError("two specs share a file name; reports and baselines are named by it")
    try:
        device = resolve_device(args.device)
    except RunError as e:
        raise UsageError(str(e)) from None
    baseline = None
    if args.baseline:
        try:
            if args.update_baseline and not Path(args.baseline).exists():
                baseline = Baseline.empty()
            else:
                baseline = Baseline.load(Path(args.baseline))
        except BaselineError as e:
            raise UsageError(str(e)) from None
    compiled, failed = [], 0
    for spec in specs:  # every spec is checked before any is run: errors cost no time
        try:
            plan, run_dirs = compile_for_run(spec, args.run)
        except (SpecError, UsageError) as e:
            message = str(e) if isinstance(e, SpecError) else f"error: {for_terminal(e)}"
            err_console.print(message)
            failed += 1
            continue
        if run_dirs:
            compiled.append((spec, plan, run_dirs))
    if failed:
        return 2
    if not compiled:
        raise UsageError(f"{' '.join(args.specs)}: no spec with claims")
    regressions, unmet = [], []
    for spec, plan, run_dirs in compiled:
        result = _run_one(args, spec, plan, run_dirs, device, cache_dir)
        if baseline is None:
            unmet += [c.name for c in result.claims if c.meets_expectation is False]
            continue
        regressions += _gate(spec, result, baseline, args.update_baseline)
    if baseline is not None and args.update_baseline:
        baseline.save(Path(args.baseline))
        console.print(
            f"baseline: recorded {len(compiled)} spec(s) in {for_terminal(args.baseline)}"
        )
    if unmet:
        err_console.print(f"verdicts differ from `expect`: {for_terminal(', '.join(unmet))}")
        return 1
    if regressions:
        from runner.report.terminal import gate_table

        console.print(gate_table(regressions))
        for status, said in (("regression", "regressed"), ("not evaluable", "not evaluable")):
            names = [c.claim for c in regressions if c.status == status]
            if names:
                err_console.print(f"{len(names)} claim(s) {said}: {', '.join(names)}")
        return 1
    return 0


def _run_one(
    args: argparse.Namespace,
    spec: Path,
    plan: Plan,
    run_dirs: list[Path],
    device: str,
    cache_dir: Path | None,
) -> StudyResult:
    from runner.engine.study import run_study
    from runner.report.files import write_reports
    from runner.report.terminal import claim_details, progress_for, summary_table

    counts: dict[str, int] = {}
    seconds: dict[str, float] = {}
    figures = bool(args.report) and not args.no_figures
    started = time.perf_counter()
    with progress_for(console, err_console) as progress:  # bars, or lines in a CI log
        result = run_study(
            plan, run_dirs, seed=args.seed, progress=progress, cache_dir=cache_dir,
            jobs=args.jobs, device=device, threads=args.threads, counts=counts,
            trajectories=figures, seconds=seconds, executor=args.executor,
            ray_address=args.ray_address,
        )  # fmt: skip
    if args.verbose:
        text = read_spec(spec)
        for claim in result.claims:
            console.print(claim_details(claim, text))
    console.print(summary_table(result, seconds))
    cached = counts.get("requested", 0) - counts.get("computed", 0)
    console.print(
        f"{counts.get('requested', 0)} measurements ({cached} from the cache) on {device} "
        f"in {time.perf_counter() - started:.1f} s",
        soft_wrap=True,
    )
    if args.report:
        written = write_reports(result, Path(args.report), spec.stem, spec, figures)
        shown = for_terminal(written.markdown)
        console.print(f"report: {shown} ({len(written.figures)} figures)")
    return result


def _gate(spec: Path, result: StudyResult, baseline: Baseline, update: bool) -> list[Check]:
    """Regressions of one spec against the baseline; with `update`, the baseline is rewritten
    instead, and only a claim that misses its own `expect` still fails."""
    from runner.report.gate import FAILING, check_study

    checks = check_study(spec.stem, result, baseline)
    for c in checks:
        if c.status == "improved" and not update:
            console.print(_notice(c.message), soft_wrap=True)
    for name in baseline.removed(spec.stem, result):
        console.print(_notice(f"{name}: in the baseline, no longer in {spec}"))
    if update:
        baseline.record(spec.stem, result)
        missed = [c for c in checks if c.status == "regression" and c.source == "expect"]
        return missed + [c for c in checks if c.status == "not evaluable"]
    return [c for c in checks if c.status in FAILING]


def _notice(message: str) -> Text:
    return Text.assemble(("notice", "blue"), f": {for_terminal(message)}")
