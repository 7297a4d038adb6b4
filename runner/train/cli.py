"""`hypo train`: training with a Rich progress bar and a line per checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hypodsl.escape import for_terminal
from runner.model.checkpoints import list_steps
from runner.model.configs import TrainConfig
from runner.train.loop import train

SHOWN = ("test_iid", "heldout", "structural_ood")  # all splits are in metrics.jsonl


def train_with_progress(
    config: TrainConfig, run_dir: Path, console: Console, device: str = "cpu"
) -> None:
    if config.steps in list_steps(run_dir):
        console.print(
            f"{for_terminal(run_dir)}: already trained to step {config.steps}; nothing to do"
        )
        return
    start = time.monotonic()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"train {config.name}", total=config.steps, loss=float("nan"))

        def on_step(step: int, total: int, loss: float) -> None:
            progress.update(task, completed=step, loss=loss)

        def on_checkpoint(step: int, metrics: dict[str, dict[str, float]]) -> None:
            progress.update(task, completed=step)
            accs = "  ".join(f"{s} {metrics[s]['answer_accuracy']:.3f}" for s in SHOWN)
            progress.console.print(f"step {step:>6}  answer accuracy  {accs}")

        train(config, run_dir, on_step=on_step, on_checkpoint=on_checkpoint, device=device)
    console.print(f"trained {for_terminal(run_dir)} in {time.monotonic() - start:.0f} s")
