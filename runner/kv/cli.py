"""`hypo data generate`: write every split and show the sanity report as a Rich table."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hypodsl.escape import for_terminal
from runner.atomic import atomic_write_text
from runner.kv import dataset
from runner.kv.sanity import sanity_report

# The draft's sanity numbers (BENCHMARK.md), shown beside ours.
DRAFT = {
    "exact_sequence_overlap": "0",
    "latent_program_overlap": "0",
    "heldout_leakage": "0",
    "first_value_for_key": "0.0",
    "last_value_before_query": "0.0",
    "most_frequent_value_before_query": "about 0.146",
}


def generate_data(out: Path, seed: int, train: int | None, console: Console) -> dict:
    config = dataset.DataConfig(seed=seed, **({"train": train} if train else {}))
    with console.status("generating splits") as status:
        arrays = dataset.generate(config, progress=lambda s: status.update(f"generated {s}"))
        manifest = dataset.save(out, config, arrays)
        status.update("sanity report")
        report = write_sanity(out, arrays)
    console.print(sanity_table(report))
    sizes = ", ".join(f"{s} {n}" for s, n in manifest["splits"].items())
    console.print(f"data: {for_terminal(out)} ({sizes})")
    return report


def write_sanity(out: Path, arrays: dict) -> dict:
    tokens = {s: arrays[s]["tokens"] for s in dataset.SPLITS}
    tokens["counterfactual_clean"] = arrays["counterfactual"]["clean_tokens"]
    heldout = arrays["_heldout_pairs"]["mask"].astype(bool)
    report = sanity_report(tokens, heldout, dataset.EVAL_SPLITS)
    atomic_write_text(out / "sanity.json", json.dumps(report, indent=2) + "\n")
    return report


def sanity_table(report: dict) -> Table:
    table = Table(title="Benchmark sanity", title_justify="left")
    table.add_column("check")
    table.add_column("ours", justify="right")
    table.add_column("draft", justify="right")
    ours = {**report, **report["heuristics"]}
    for check, draft in DRAFT.items():
        value = ours[check]
        table.add_row(check, f"{value:.3f}" if isinstance(value, float) else str(value), draft)
    return table
