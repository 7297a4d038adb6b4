"""Write a study's reports: NAME.md, NAME.json and the figures in figures/NAME/.

Every file is written to a temporary name and renamed, so a reader (or a killed run) sees the
old file or the new one, never a torn one. The files are written in one order: the figures,
then NAME.json, then NAME.md, which names the SHA-256 of the NAME.json it describes. So a kill
never leaves a new ledger beside old results: at worst new results beside the old ledger, which
the ledger's stated hash shows, and the next run replaces. Figures are removed only when this
code wrote them (`figures/NAME/.written.json` lists them) and the spec no longer has their
claim: a file of the user's in that folder is never touched. Temporary files a killed run
left (runner.atomic's `.NAME.XXXXXXXX.tmp`, for these reports' files only) are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from runner.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from runner.stats.results import StudyResult

MANIFEST = ".written.json"  # in figures/NAME/: the figures this code wrote there


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
    _remove_stale_figures(figure_dir, {p.name for p in written})
    remove_stale_temporaries(
        figure_dir, lambda target: target.endswith(".png") or target == MANIFEST
    )
    remove_stale_temporaries(out_dir, {f"{name}.md", f"{name}.json"}.__contains__)
    spec_link = None
    if spec is not None:
        spec_link = Path(os.path.relpath(spec.resolve(), out_dir.resolve())).as_posix()
    json_path = out_dir / f"{name}.json"
    results_json = result.model_dump_json(indent=2) + "\n"
    atomic_write_text(json_path, results_json)
    results_sha = hashlib.sha256(results_json.encode("utf-8")).hexdigest()
    markdown = out_dir / f"{name}.md"
    atomic_write_text(
        markdown, render_markdown(result, links, spec_link, (json_path.name, results_sha))
    )
    return Written(markdown, json_path, tuple(written))


def _remove_stale_figures(figure_dir: Path, current: set[str]) -> None:
    """Remove the figures a previous run wrote that this one did not; record this run's."""
    manifest = figure_dir / MANIFEST
    previous: set[str] = set()
    if manifest.is_file():
        try:
            listed = json.loads(manifest.read_text())
            previous = (
                {n for n in listed if isinstance(n, str)} if isinstance(listed, list) else set()
            )
        except (OSError, ValueError):
            previous = set()
    for stale in previous - current:
        path = figure_dir / stale
        if (
            path.name == stale
            and path.suffix == ".png"
            and path.is_file()
            and not path.is_symlink()
        ):
            path.unlink()
    if current or manifest.exists():
        atomic_write_text(manifest, json.dumps(sorted(current)) + "\n")
