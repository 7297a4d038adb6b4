"""`hypo features fit|explore`: the feature-basis commands (they import the runner lazily)."""

from __future__ import annotations

import argparse
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
    from runner.model.checkpoints import list_steps
    from runner.model.rundir import read_config

    set_threads(args.threads)
    run_dir = Path(args.run)
    read_config(run_dir)  # a clear error if this is not a run directory
    steps: tuple[int, ...] = ()
    if args.steps:
        low, high = args.steps
        steps = tuple(s for s in list_steps(run_dir) if low <= s <= high)
        if not steps:
            raise UsageError(f"--steps {low}..{high}: no checkpoint of {run_dir} lies there")
    out = Path(args.out) if args.out else run_dir / "features" / args.site
    ensure_writable_dir(out, "--out")
    settings = FitSettings(
        site=args.site, width=args.width, steps=steps, split=args.probe_split,
        sequences=args.sequences, l1=args.l1, train_steps=args.train_steps, seed=args.seed,
    )  # fmt: skip
    fit_with_progress(run_dir, out, settings, console)
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from runner.features.cli import explore_with_progress

    set_threads(args.threads)
    basis_dir = Path(args.basis)
    run_dir = Path(args.run) if args.run else basis_dir.resolve().parents[1]
    out = Path(args.out)
    ensure_writable_dir(out, "--out")
    if not 0 < args.threshold < 1:
        raise UsageError(f"--threshold {args.threshold}: expected a correlation in (0, 1)")
    explore_with_progress(
        basis_dir, run_dir, out, args.name or basis_dir.name.replace(".", "_"),
        args.probe_split, args.sequences, args.threshold, console,
    )  # fmt: skip
    return 0


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
