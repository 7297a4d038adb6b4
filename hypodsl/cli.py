"""The `hypo` command line: the one place that prints and chooses exit codes.

Exit codes: 0 success; 1 a claim's verdict differs from its `expect`; 2 bad input (a spec error,
a missing run, a bad argument), reported as `file:line:col: message`, never as a traceback.
Commands that need torch import `runner` inside their function, so `hypo check` stays light.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypodsl import __version__
from hypodsl.cli_common import (
    SpecError,
    UsageError,
    bounded_int,
    check_output_file,
    console,
    ensure_writable_dir,
    err_console,
    expand_specs,
    load_plan,
    read_spec,
    set_threads,
)
from hypodsl.errors import HypError, UserError, format_error
from hypodsl.escape import for_terminal
from hypodsl.jsonfile import load_signature
from hypodsl.parser import parse


def _signature(run: str | None, signature: str | None) -> dict | None:
    path = Path(signature) if signature else (Path(run) / "signature.json" if run else None)
    if path is None:
        return None
    if not path.exists():
        raise UsageError(f"{path}: no signature.json (train the run first, or pass --signature)")
    return load_signature(path)


def cmd_check(args: argparse.Namespace) -> int:
    signature = _signature(args.run, args.signature)
    failed = 0
    for spec in expand_specs(args.specs):
        try:
            plan = load_plan(spec, signature)
        except SpecError as e:
            err_console.print(str(e), markup=False)
            failed += 1
            continue
        console.print(f"{for_terminal(spec)}: ok ({len(plan.claims)} claims)", soft_wrap=True)
    return 2 if failed else 0


def cmd_plan(args: argparse.Namespace) -> int:
    plan = load_plan(Path(args.spec), _signature(args.run, args.signature))
    if args.json:
        print(plan.model_dump_json(indent=2))
    else:
        from hypodsl.plan_view import plan_tree

        console.print(plan_tree(plan))
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    from hypodsl.formatter import fmt

    changed, failed = [], 0
    for path in expand_specs(args.specs):
        name = str(path)
        text = read_spec(path)
        try:
            formatted = fmt(parse(text, name))
        except HypError as e:
            err_console.print(format_error(e, {name: text}), markup=False)
            failed += 1
            continue
        if args.stdout:
            _print_spec(formatted)
        elif formatted != text:
            changed.append(name)
            if not args.check:
                _write_atomically(path, formatted)
    for name in changed:
        said = "would reformat" if args.check else "reformatted"
        console.print(f"{said} {for_terminal(name)}", soft_wrap=True)
    if failed:
        return 2
    return 1 if args.check and changed else 0


def _print_spec(text: str) -> None:
    """The text exactly as written; highlighted only on a terminal wide enough for every line
    (Rich would crop a longer one)."""
    widest = max((len(line) for line in text.splitlines()), default=0)
    if console.is_terminal and widest < console.width:
        from rich.syntax import Syntax

        from hypodsl.highlight import HypLexer

        console.print(Syntax(text, HypLexer(), theme="ansi_dark", background_color="default"))
    else:
        sys.stdout.write(text)


def _write_atomically(path: Path, text: str) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, path.stat().st_mode)  # keep the spec's mode (mkstemp makes it private)
    os.replace(tmp, path)


def cmd_run(args: argparse.Namespace) -> int:
    from hypodsl.cli_run import run_specs

    return run_specs(args)


def cmd_schema(args: argparse.Namespace) -> int:
    from runner.stats.results import StudyResult

    if args.out:
        check_output_file(Path(args.out), "--out")
    text = json.dumps(StudyResult.model_json_schema(), indent=2) + "\n"
    if args.out:
        from runner.atomic import atomic_write_text

        atomic_write_text(Path(args.out), text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from rich.table import Table

    from runner.report.diff import SHORT, diff, load_results, provenance_changes

    old, new = load_results(Path(args.old)), load_results(Path(args.new))
    measured = provenance_changes(old.provenance, new.provenance)
    if not measured:
        console.print(
            f"same plan ({old.provenance.plan_hash[:SHORT]}), data, checkpoints, settings"
        )
    for m in measured:  # first what was measured: a spec edit, a model change, a setting
        line = f"{m.subject}: {m.old} -> {m.new} — {m.note}"
        console.print(for_terminal(line), soft_wrap=True)
    changes = diff(old, new)
    if not changes:
        console.print("no claim changed")
        return 0
    table = Table(title=for_terminal(f"{args.old} -> {args.new}"), title_justify="left")
    for column in ("claim", "change", "old", "new"):
        table.add_column(column, overflow="fold")
    for c in changes:
        table.add_row(*(for_terminal(x) for x in (c.claim, c.kind, c.old, c.new)))
    console.print(table)
    return 1 if any(c.kind != "estimate" for c in changes) else 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from runner.engine.cache import MeasurementCache, default_dir

    root = Path(args.cache_dir) if args.cache_dir else default_dir()
    removed = MeasurementCache(root).clear()
    console.print(
        f"removed {removed} cached measurements from {for_terminal(root)}", soft_wrap=True
    )
    return 0


def cmd_cache_info(args: argparse.Namespace) -> int:
    from runner.engine.cache import MeasurementCache, default_dir

    root = Path(args.cache_dir) if args.cache_dir else default_dir()
    entries = MeasurementCache(root).entries()
    size = sum(e.stat().st_size for e in entries)
    console.print(
        f"{for_terminal(root)}: {len(entries)} cached measurements, {size / 1e6:.1f} MB",
        soft_wrap=True,
    )
    return 0


def cmd_data_generate(args: argparse.Namespace) -> int:
    from runner.kv.cli import generate_data

    ensure_writable_dir(Path(args.out), "--out")
    generate_data(Path(args.out), args.seed, args.train, console)
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from runner.model.configs import load_config
    from runner.model.transformer import Transformer

    config = load_config(args.config)
    model = Transformer(config.model)
    m = config.model
    console.print(
        f"{config.name}: d_model {m.d_model}, layers {m.n_layers}, heads {m.n_heads}, "
        f"d_ff {m.d_ff}, n_ctx {m.n_ctx}, vocab {m.vocab_size}"
    )
    console.print(f"parameters: {model.n_parameters():,}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from runner.model.configs import load_config
    from runner.model.device import resolve_device
    from runner.model.rundir import RunError
    from runner.train.cli import train_with_progress

    set_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except RunError as e:
        raise UsageError(str(e)) from None
    config = load_config(args.config)
    if args.ray_address and args.executor != "ray":
        raise UsageError("--ray-address: only with --executor ray")
    if args.seeds is not None:
        return _train_seeds(args, config, device)
    if args.executor != "local" or args.data:
        raise UsageError("--executor and --data: only with --seeds")
    if args.seed is not None:  # another seed of the same config: init and batch order change
        config = config.model_copy(update={"seed": args.seed})
    ensure_writable_dir(Path(args.out), "--out")
    train_with_progress(config, Path(args.out), console, device)
    return 0


def _train_seeds(args: argparse.Namespace, config: Any, device: str) -> int:
    """`hypo train --seeds A..B`: a seed matrix in OUT/seed-S/, one after another or on Ray."""
    from runner.engine.progress import Silent
    from runner.train.seeds import prepare, seed_dir, train_seed, trained

    if args.seed is not None:
        raise UsageError("--seed and --seeds: give one")
    if device != "cpu":
        raise UsageError("--seeds trains on the CPU (--device cpu)")
    if not args.data:
        raise UsageError("--seeds needs --data DIR: the splits every seed trains on")
    out = Path(args.out)
    ensure_writable_dir(out, "--out")
    prepare(out, args.seeds, Path(args.data))
    todo = [s for s in args.seeds if not trained(config, out, s)]
    jobs = [(config.model_dump_json(), str(seed_dir(out, s)), s, args.threads) for s in todo]
    started = time.perf_counter()
    if args.executor == "ray":
        from runner.engine.ray_executor import run_on_ray

        seconds = run_on_ray(train_seed, jobs, args.threads or 1, Silent(), args.ray_address)
    else:
        seconds = [train_seed(*job) for job in jobs]
    for seed, took in zip(todo, seconds, strict=True):
        console.print(f"seed {seed}: trained to step {config.steps} in {took:.0f} s")
    done = len(args.seeds) - len(todo)
    console.print(
        f"{len(todo)} seeds trained ({done} already were) in {time.perf_counter() - started:.0f} s"
        f" into {for_terminal(out)}/seed-S"
    )
    return 0


MAX_SEEDS = 1000


def _seed_range(text: str) -> list[int]:
    """`0..9` or `0,3,5` -> the seeds (counted before a list of them is built)."""
    try:
        if ".." in text:
            low, high = (int(x) for x in text.split(".."))
            count = high - low + 1
            seeds = list(range(low, high + 1)) if 0 < count <= MAX_SEEDS else []
        else:
            parts = text.split(",")
            seeds = [int(x) for x in parts] if len(parts) <= MAX_SEEDS else []
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}`: expected A..B or A,B,C") from None
    if not seeds or min(seeds) < 0 or max(seeds) > SEED_MAX or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(
            f"`{text}`: expected 1 to {MAX_SEEDS} distinct seeds in 0..{SEED_MAX}"
        )
    return seeds


def cmd_export(args: argparse.Namespace) -> int:
    from runner.model.checkpoints import list_steps
    from runner.model.hf_gpt2 import check_export_target, export_run, export_step
    from runner.model.rundir import read_config

    run_dir, out = Path(args.run), Path(args.out)
    read_config(run_dir)  # a clear error if this is not a run directory
    if out.resolve() == run_dir.resolve():
        raise UsageError(f"--to hf {out}: is the run directory itself; export elsewhere")
    steps = list_steps(run_dir)
    if not steps:
        raise UsageError(f"{run_dir}: no checkpoints")
    ensure_writable_dir(out, "--to hf OUT")
    if args.step == "all":
        check_export_target(out, steps, args.force)
        written = export_run(run_dir, None, out)
        console.print(f"{len(written)} checkpoints written to {for_terminal(out)}/checkpoint-STEP/")
        return 0
    step = steps[-1] if args.step == "final" else int(args.step)
    if step not in steps:
        raise UsageError(f"--step {step}: {run_dir} has no checkpoint there")
    check_export_target(out, None, args.force)
    export_step(run_dir, step, out)
    console.print(f"step {step} written to {for_terminal(out)} (config.json, model.safetensors)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from runner.model.hf_import import import_series

    out = Path(args.out)
    created = [p for p in (out, *out.parents) if not os.path.lexists(p)]
    ensure_writable_dir(out, "--out")
    data = Path(args.data) if args.data else None
    task = Path(args.task) if args.task else None
    try:
        steps = import_series(Path(args.source), out, data=data, task=task)
    except UserError:
        for path in created:  # a refused import leaves nothing behind (it checks before writing)
            if not any(path.iterdir()):
                path.rmdir()
        raise
    console.print(
        f"{len(steps)} checkpoints ({steps[0]} .. {steps[-1]}) imported into {for_terminal(out)}"
    )
    return 0


def _export_step(text: str) -> str:
    if text in ("final", "all") or (text.isdigit() and len(text) <= 12):
        return text
    raise argparse.ArgumentTypeError(f"`{text}` is not a step, `final` or `all`")


def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.table import Table

    from runner.train.sweep import suggested_lines, summary_rows, sweep, write_report

    if args.report:
        ensure_writable_dir(Path(args.report), "--report")
    result = sweep(Path(args.run), width=args.width, grid=args.grid)
    table = Table(
        title=f"{for_terminal(result.run)}: answer accuracy, {len(result.steps)} checkpoints"
    )
    for column in ("split", "final", f"best {result.width}-step window", "gain", "trigger"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for row in summary_rows(result):
        w, t = row["window"], row["trigger"]
        span = "—" if w is None else f"{w.start}–{w.end}"
        gain = "—" if w is None else f"{w.gain:+.3f}"
        table.add_row(row["split"], f"{row['final']:.3f}", span, gain, f"{t.step} ({t.gain:+.3f})")
    console.print(table)
    console.print("suggested windows (specs decide):")
    for line in suggested_lines(result):
        console.print("  " + for_terminal(line), soft_wrap=True)
    if args.report:
        report = write_report(result, Path(args.report))
        console.print(f"report: {for_terminal(report)}", soft_wrap=True)
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from runner.atomic import atomic_write_text
    from runner.engine.explore import ExploreError, explore
    from runner.model.rundir import RunError
    from runner.report.explore import sparkline, table_csv, write_figure

    set_threads(args.threads)
    run = Path(args.run)
    if args.out:
        ensure_writable_dir(Path(args.out), "--out")
    try:
        explored = explore(
            run, args.quantities, split=args.split, n=args.n, seed=args.seed,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        )  # fmt: skip
    except (ExploreError, RunError) as error:
        raise UsageError(str(error)) from None
    console.print(
        f"{for_terminal(run.name)} on {args.n} sequences of {for_terminal(args.split)} "
        "(a discovery probe: test what you find on another split)"
    )
    summary = Table(show_edge=False)
    for column in ("quantity", "first", "last", "min", "max"):
        summary.add_column(column, justify="left" if column == "quantity" else "right")
    longest = max(len(item.trajectory.points) for item in explored)
    summary.add_column("trajectory", no_wrap=True, min_width=longest)
    for item in explored:
        values = [pt.estimate for pt in item.trajectory.points]
        known = [v for v in values if v is not None]
        if not known:
            summary.add_row(
                Text(for_terminal(item.trajectory.label)),
                "—",
                "—",
                "—",
                "—",
                for_terminal(item.reason),
            )
            continue
        summary.add_row(
            Text(for_terminal(item.trajectory.label)), f"{known[0]:.3g}", f"{known[-1]:.3g}",
            f"{min(known):.3g}", f"{max(known):.3g}", sparkline(values),
        )  # fmt: skip
    console.print(summary)
    steps = Table(show_edge=False)
    steps.add_column("step", justify="right")
    for item in explored:
        steps.add_column(Text(for_terminal(item.trajectory.label)), justify="right")
    by_step = [{pt.step: pt for pt in item.trajectory.points} for item in explored]
    for step in sorted({pt.step for item in explored for pt in item.trajectory.points}):
        cells = []
        for points in by_step:
            pt = points.get(step)
            if pt is None or pt.estimate is None:
                cells.append("—")
            elif pt.interval is None:
                cells.append(f"{pt.estimate:.3g}")
            else:
                cells.append(f"{pt.estimate:.3g} [{pt.interval.low:.3g}, {pt.interval.high:.3g}]")
        steps.add_row(str(step), *cells)
    console.print(steps)
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "explore.csv", table_csv([item.trajectory for item in explored]))
        write_figure([item.trajectory for item in explored], out / "explore.png", run.name)
        console.print(f"wrote {for_terminal(out / 'explore.csv')} and explore.png")
    return 0


THREADS = bounded_int(1, 1024)
JOBS = bounded_int(1, 256)
SEED_MAX = 2**63 - 1
SEED = bounded_int(0, SEED_MAX)
TRAIN_SIZE = bounded_int(1, 10**8)


class _Parser(argparse.ArgumentParser):
    """Usage errors quote the arguments given; they are printed with control characters
    escaped. Subcommands' parsers are of the same class."""

    def _print_message(self, message: str, file: Any = None) -> None:
        super()._print_message(for_terminal(message), file)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hypo", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hypodsl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate specs (exit 0 valid, 2 with errors)")
    check.add_argument("specs", nargs="+", metavar="SPEC", help="a .hyp file, or a directory")
    _signature_args(check)
    check.set_defaults(func=cmd_check)

    plan = sub.add_parser("plan", help="show the compiled plan of a spec")
    plan.add_argument("spec")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    _signature_args(plan)
    plan.set_defaults(func=cmd_plan)

    fmt = sub.add_parser("fmt", help="rewrite specs in the canonical layout")
    fmt.add_argument("specs", nargs="+", metavar="SPEC", help="a .hyp file, or a directory")
    fmt.add_argument("--check", action="store_true", help="exit 1 if a file would change")
    fmt.add_argument("--stdout", action="store_true", help="print (highlighted), do not write")
    fmt.set_defaults(func=cmd_fmt)

    run = sub.add_parser(
        "run",
        help="evaluate specs' claims and write reports; with --baseline, a CI gate",
        description="Exit 0: every verdict as expected; 1: a claim misses its `expect` "
        "(or, with --baseline, regressed); 2: bad input.",
    )
    run.add_argument("specs", nargs="+", metavar="SPEC")
    run.add_argument("--run", help="run directory (default: the spec's `run` path)")
    run.add_argument("--report", help="directory for NAME.md, NAME.json and figures/NAME/*.png")
    run.add_argument(
        "--no-figures", action="store_true", help="write reports without figures (faster)"
    )
    run.add_argument(
        "--baseline", help="CI gate: compare verdicts with this baseline file (exit 1: regressed)"
    )
    run.add_argument(
        "--update-baseline", action="store_true", help="rewrite the --baseline file instead"
    )
    run.add_argument("--seed", type=SEED, default=0, help="bootstrap seed (default 0)")
    run.add_argument("--threads", type=THREADS, help="torch CPU threads")
    run.add_argument(
        "-v", "--verbose", action="store_true",
        help="show each claim as written, its per-checkpoint series and reasons",
    )  # fmt: skip
    run.add_argument(
        "--jobs", type=JOBS, default=1, help="checkpoints measured in parallel processes"
    )
    run.add_argument(
        "--executor", choices=("local", "ray"), default="local",
        help="where checkpoints are measured: this process (and --jobs), or Ray tasks",
    )  # fmt: skip
    run.add_argument(
        "--ray-address", metavar="ADDR",
        help="a Ray cluster (HOST:PORT, ray://HOST:PORT or auto); default: a local instance",
    )  # fmt: skip
    run.add_argument(
        "--device", default="cpu", help="auto, cpu or cuda (default cpu; auto: a GPU if present)"
    )
    run.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    run.add_argument(
        "--cache-dir", help="measurement cache (default $HYPODSL_CACHE or .hypo-cache)"
    )
    run.set_defaults(func=cmd_run)

    explore_cmd = sub.add_parser(
        "explore", help="quantities across every checkpoint of a run, on a discovery probe"
    )
    explore_cmd.add_argument(
        "quantities", nargs="+", metavar="QUANTITY",
        help="as in a spec: accuracy, 'attention(L0.H3, from=answer, to=match_value)', ...",
    )  # fmt: skip
    explore_cmd.add_argument("--run", required=True, help="the run directory")
    explore_cmd.add_argument("--split", default="val_iid", help="the probe's split (val_iid)")
    explore_cmd.add_argument("--n", type=bounded_int(1, 100_000), default=256,
                             help="sequences in the probe (256)")  # fmt: skip
    explore_cmd.add_argument("--seed", type=SEED, default=0, help="the probe's sampling seed")
    explore_cmd.add_argument("--out", help="write explore.csv and explore.png here")
    explore_cmd.add_argument("--threads", type=THREADS, default=None)
    explore_cmd.add_argument("--cache-dir", help="the measurement cache (default .hypo-cache)")
    explore_cmd.set_defaults(func=cmd_explore)

    schema = sub.add_parser("schema", help="print the JSON Schema of results files")
    schema.add_argument("--out", help="write it to this file instead")
    schema.set_defaults(func=cmd_schema)

    diff = sub.add_parser("diff", help="what changed between two results files (exit 1: verdicts)")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.set_defaults(func=cmd_diff)

    cache = sub.add_parser("cache", help="the measurement cache").add_subparsers(
        dest="cache_cmd", required=True
    )
    clear = cache.add_parser("clear", help="remove every cached measurement")
    clear.add_argument("--cache-dir", help="default $HYPODSL_CACHE or .hypo-cache")
    clear.set_defaults(func=cmd_cache_clear)
    info_cache = cache.add_parser("info", help="count the cached measurements")
    info_cache.add_argument("--cache-dir", help="default $HYPODSL_CACHE or .hypo-cache")
    info_cache.set_defaults(func=cmd_cache_info)

    data = sub.add_parser("data", help="benchmark data").add_subparsers(
        dest="data_cmd", required=True
    )
    gen = data.add_parser("generate", help="generate every split and its sanity report")
    gen.add_argument("--out", required=True)
    gen.add_argument("--seed", type=SEED, default=0)
    gen.add_argument(
        "--train", type=TRAIN_SIZE, help="train-split size in sequences (default 100000)"
    )
    gen.set_defaults(func=cmd_data_generate)

    model = sub.add_parser("model", help="model configs").add_subparsers(
        dest="model_cmd", required=True
    )
    info = model.add_parser("info", help="print a config's shape and parameter count")
    info.add_argument("--config", default="small", help="small, reference, tiny or a JSON file")
    info.set_defaults(func=cmd_model_info)

    train = sub.add_parser("train", help="train a run with dense checkpoints (resumes if killed)")
    train.add_argument("--config", default="small", help="small, reference, tiny or a JSON file")
    train.add_argument("--out", required=True, help="run directory")
    train.add_argument("--threads", type=THREADS, help="torch CPU threads")
    train.add_argument(
        "--seed", type=SEED, help="the config's seed instead (weights' init and batch order)"
    )
    train.add_argument(
        "--seeds", type=_seed_range, metavar="A..B",
        help="a seed matrix: each seed into OUT/seed-S/ (with --data)",
    )  # fmt: skip
    train.add_argument("--data", help="with --seeds: the splits every seed trains on")
    train.add_argument(
        "--executor", choices=("local", "ray"), default="local",
        help="with --seeds: train one after another here, or as Ray tasks",
    )  # fmt: skip
    train.add_argument("--ray-address", metavar="ADDR", help="a Ray cluster (default: local)")
    train.add_argument(
        "--device", default="cpu", help="auto, cpu or cuda (default cpu; auto: a GPU if present)"
    )
    train.set_defaults(func=cmd_train)

    steps = bounded_int(1, 10**9)
    sweep = sub.add_parser(
        "sweep", help="a run's metrics at every checkpoint: windows of largest gain, triggers"
    )
    sweep.add_argument("run", help="run directory")
    sweep.add_argument("--report", help="write DIR/sweep_RUN.md and its timeline figure")
    sweep.add_argument("--width", type=steps, default=500, help="window width in steps (500)")
    sweep.add_argument("--grid", type=steps, default=250, help="trigger grid in steps (250)")
    sweep.set_defaults(func=cmd_sweep)

    export = sub.add_parser(
        "export", help="a run's checkpoints as Hugging Face GPT-2 directories (transformers loads)"
    )
    export.add_argument("run", help="run directory")
    export.add_argument(
        "--step", type=_export_step, default="final",
        help="a step, `final` (default) or `all` (OUT/checkpoint-STEP/ for each)",
    )  # fmt: skip
    export.add_argument("--to", dest="format", choices=["hf"], required=True, help="format: hf")
    export.add_argument("out", help="output directory")
    export.add_argument(
        "--force", action="store_true",
        help="overwrite an earlier export's files in OUT (without it, export refuses to replace "
        "any file; with it, still refuses a directory where a file goes, or other "
        "checkpoint-N/ folders beside a series)",
    )  # fmt: skip
    export.set_defaults(func=cmd_export)

    imp = sub.add_parser(
        "import", help="a Hugging Face GPT-2 checkpoint series (checkpoint-STEP/) as a run"
    )
    imp.add_argument(
        "source",
        help="directory of checkpoint-STEP/ folders, as Trainer writes, or a JSON file "
        '{"STEP": "DIRECTORY", ...}',
    )
    task = imp.add_mutually_exclusive_group(required=True)
    task.add_argument("--data", help="the stream-KV splits (`hypo data generate`)")
    task.add_argument(
        "--task", help="a task directory (task.json + SPLIT.jsonl; docs/own_model.md)"
    )
    imp.add_argument("--out", required=True, help="the new run directory")
    imp.set_defaults(func=cmd_import)

    from hypodsl.cli_features import add_parsers

    add_parsers(sub)
    return parser


def _signature_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--run", help="check against this run directory's signature.json")
    group.add_argument("--signature", help="check against this signature.json")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage error (exit 2) or --help (0)
        return e.code if isinstance(e.code, int) else 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SpecError as e:
        err_console.print(str(e), markup=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except (UserError, FileNotFoundError) as e:
        err_console.print(f"error: {for_terminal(e)}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
