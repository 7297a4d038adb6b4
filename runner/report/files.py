"""Write a study's reports: NAME.md, NAME.json and the figures in figures/NAME/, atomically.

Every file is written to a temporary name and renamed, so a reader (or a killed run) sees the
old report or the new one. Figures of claims the spec no longer has are removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.stats.results import StudyResult


@dataclass(frozen=True)
class Written:
    markdown: Path
    json: Path
    figures: tuple[Path, ...]


def write_reports(
    result: StudyResult, out_dir: Path, name: str, spec: Path | None = None, figures: bool = True
) -> Written:
    from runner.report.ledger import render_markdown

    figure_dir = out_dir / "figures" / name
    links: dict[str, str] = {}
    written: list[Path] = []
    if figures:
        from runner.report.figures import claim_figure

        for claim in result.claims:
            png = claim_figure(claim)
            if png is None:
                continue
            path = figure_dir / f"{claim.name}.png"
            atomic_write_bytes(path, png)
            written.append(path)
            links[claim.name] = path.relative_to(out_dir).as_posix()
    if figure_dir.is_dir():
        for stale in set(figure_dir.glob("*.png")) - set(written):
            stale.unlink()
    spec_link = None
    if spec is not None:
        spec_link = Path(os.path.relpath(spec.resolve(), out_dir.resolve())).as_posix()
    markdown = out_dir / f"{name}.md"
    atomic_write_text(markdown, render_markdown(result, links, spec_link))
    json_path = out_dir / f"{name}.json"
    atomic_write_text(json_path, result.model_dump_json(indent=2) + "\n")
    return Written(markdown, json_path, tuple(written))
