"""`hypo features fit|explore`: the feature-basis commands (they import the runner lazily)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from hypodsl.cli_common import UsageError, bounded_int, console, ensure_writable_dir, set_threads

WIDTH = bounded_int(1, 1 << 20)
COUNT = bounded_int(1, 10**8)
SEED = bounded_int(0, 2**63 - 1)
THREADS = bounded_int(1, 1024)


def _steps(text: str) -> tuple[int, int]:
    start, sep, end = text.partition("..")
    try:
        if not sep:
            raise ValueError
        return int(start), int(end)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a range of steps `A..B`") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number ≥ 0")
    return value


def cmd_fit(args: argparse.Namespace) -> int:
    from runner.features.cli import fit_with_progress
    from runner.features.fit import FitSettings
    from runner.features.fit_checks import check_fit_memory, site_width
    from runner.model.checkpoints import list_steps
    from runner.model.rundir import read_config

    set_threads(args.threads)
    run_dir = Path(args.run)
    config = read_config(run_dir)  # a clear error if this is not a run directory
    # the site names the default --out: checked against the model before anything is created
    d_in = site_width(config.model, args.site)
    _check_split(run_dir, args.probe_split, "--probe-split")
    steps: tuple[int, ...] = ()
    if args.steps:
        low, high = args.steps
        steps = tuple(s for s in list_steps(run_dir) if low <= s <= high)
        if not steps:
            raise UsageError(f"--steps {low}..{high}: no checkpoint of {run_dir} lies there")
    settings = FitSettings(
        site=args.site, width=args.width, steps=steps, split=args.probe_split,
        sequences=args.sequences, l1=args.l1, train_steps=args.train_steps, seed=args.seed,
    )  # fmt: skip
    check_fit_memory(d_in, settings.width, settings.batch_size)
    out = Path(args.out) if args.out else run_dir / "features" / args.site
    ensure_writable_dir(out, "--out")
    fit_with_progress(run_dir, out, settings, console)
    return 0


def _check_split(run_dir: Path, split: str, flag: str) -> None:
    from runner.kv import dataset
    from runner.model.rundir import data_dir

    splits = dataset.load_manifest(data_dir(run_dir))["splits"]
    if split not in splits:
        raise UsageError(f"{flag} {split}: {run_dir} has no such split; it has {', '.join(splits)}")


def cmd_explore(args: argparse.Namespace) -> int:
    from runner.features.basis import load_basis, read_info, run_identity
    from runner.features.cli import explore_with_progress
    from runner.features.fit_checks import site_width
    from runner.model.rundir import read_config

    set_threads(args.threads)
    basis_dir = Path(args.basis)
    read_info(basis_dir)  # a clear error if this is not a basis directory
    run_dir = Path(args.run) if args.run else _run_above(basis_dir)
    run = run_identity(run_dir)  # a clear error if this is not a run directory
    _check_split(run_dir, args.probe_split, "--probe-split")
    if not 0 < args.threshold < 1:
        raise UsageError(f"--threshold {args.threshold}: expected a correlation in (0, 1)")
    name = args.name or basis_dir.resolve().name.replace(".", "_")
    if not REPORT_NAME.fullmatch(name):
        raise UsageError(
            f"--name {name!r}: a report name is letters, digits, `_` and `-` (a file name under "
            "--out, and the basis's name in suggested spec lines)"
        )
    basis = load_basis(basis_dir, run)  # refused if fitted on another run
    where = f"{basis_dir / 'hypodsl_basis.json'}: site"
    d_in = site_width(read_config(run_dir).model, basis.info.site, where)
    if d_in != basis.info.d_in:
        raise UsageError(
            f"{basis_dir}: d_in {basis.info.d_in}, but `{basis.info.site}` of {run_dir} is "
            f"{d_in} wide"
        )
    out = Path(args.out)
    ensure_writable_dir(out, "--out")
    explore_with_progress(
        basis, run_dir, out, name, args.probe_split, args.sequences, args.threshold, console
    )
    return 0


REPORT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")


def _run_above(basis_dir: Path) -> Path:
    """A basis's default run: RUN of RUN/features/NAME."""
    parents = basis_dir.resolve().parents
    if len(parents) < 2:
        raise UsageError(f"{basis_dir}: no run two levels above it; name one with --run RUN")
    return parents[1]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    features = sub.add_parser("features", help="feature bases: fit and explore").add_subparsers(
        dest="features_cmd", required=True
    )
    fit = features.add_parser(
        "fit", help="fit a sparse autoencoder at a hook site, pooled across checkpoints"
    )
    fit.add_argument("--run", required=True, help="run directory")
    fit.add_argument("--site", required=True, help="hook name, e.g. blocks.1.hook_resid_post")
    fit.add_argument("--width", type=WIDTH, default=64, help="number of features (default 64)")
    fit.add_argument("--steps", type=_steps, help="only checkpoints in A..B (default: all)")
    fit.add_argument("--probe-split", default="train", help="split the activations come from")
    fit.add_argument("--sequences", type=COUNT, default=256, help="sequences of that split")
    fit.add_argument("--l1", type=_positive_float, default=1.0, help="sparsity weight (default 1)")
    fit.add_argument("--train-steps", type=COUNT, default=3000, help="optimiser steps")
    fit.add_argument("--seed", type=SEED, default=0)
    fit.add_argument("--threads", type=THREADS, help="torch CPU threads")
    fit.add_argument("--out", help="basis directory (default RUN/features/SITE)")
    fit.set_defaults(func=cmd_fit)

    explore = features.add_parser(
        "explore", help="trajectories, families and births of a basis's features (a report)"
    )
    explore.add_argument("basis", help="basis directory (RUN/features/NAME)")
    explore.add_argument("--run", help="run directory (default: two levels above the basis)")
    explore.add_argument("--out", default="reports/features", help="report directory")
    explore.add_argument("--name", help="report name and the basis name in suggested lines")
    explore.add_argument("--probe-split", default="val_iid", help="discovery split (val_iid)")
    explore.add_argument("--sequences", type=COUNT, default=256)
    explore.add_argument(
        "--threshold", type=float, default=0.8, help="trajectory correlation of a family (0.8)"
    )
    explore.add_argument("--threads", type=THREADS, help="torch CPU threads")
    explore.set_defaults(func=cmd_explore)
