"""The exploration report of a basis: Markdown with figures, written atomically.

`DIR/NAME.md` holds the fit metrics per checkpoint, the suggested families (each with the
`family` line to paste into a spec), per-feature births and activity, and links to
`DIR/figures/NAME/`: trajectories, a heatmap, the families' trajectories and the similarity
matrix. Figures use matplotlib's object API on the Agg canvas and carry no timestamp.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from runner.atomic import atomic_write_bytes, atomic_write_text
from runner.features.basis import Basis
from runner.features.explore import Exploration

TOP_TRAJECTORIES = 12


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def trajectories_figure(ex: Exploration, features: list[int], title: str) -> bytes:
    fig = Figure(figsize=(7.5, 5.0), dpi=100)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for i in features:
        top.plot(ex.steps, ex.mean_activation[:, i], label=f"f{i}", linewidth=1.2)
        bottom.plot(ex.steps, ex.active_fraction[:, i], linewidth=1.2)
    top.set_ylabel("mean activation")
    bottom.set_ylabel("active fraction")
    bottom.set_xlabel("training step")
    top.set_title(title, fontsize=10)
    if features:
        top.legend(fontsize=7, ncol=4, loc="upper left")
    return _png(fig)


def heatmap_figure(ex: Exploration) -> bytes:
    peak = ex.mean_activation.max(axis=0)
    order = np.argsort(-peak, kind="stable")
    scaled = ex.mean_activation[:, order] / np.where(peak[order] > 0, peak[order], 1)
    fig = Figure(figsize=(7.5, 4.5), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(scaled.T, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("checkpoint")
    ax.set_ylabel("feature (by peak activation)")
    ticks = np.linspace(0, len(ex.steps) - 1, min(8, len(ex.steps))).astype(int)
    ax.set_xticks(ticks, [str(ex.steps[t]) for t in ticks])
    ax.set_title("mean activation / its peak", fontsize=10)
    fig.colorbar(image, ax=ax)
    return _png(fig)


def similarity_figure(ex: Exploration) -> bytes:
    ordered = [i for fam in ex.families for i in fam.features]
    rest = [i for i in range(ex.correlation.shape[0]) if i not in ordered]
    order = ordered + rest
    fig = Figure(figsize=(6.0, 5.2), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(ex.correlation[np.ix_(order, order)], vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_title("trajectory correlation (families first)", fontsize=10)
    ax.set_xlabel("feature")
    ax.set_ylabel("feature")
    fig.colorbar(image, ax=ax)
    return _png(fig)


def family_line(basis_name: str, fam_name: str, features: tuple[int, ...]) -> str:
    return f"family {fam_name} = {basis_name}[{', '.join(map(str, features))}]"


def render(ex: Exploration, basis: Basis, basis_name: str, name: str, links: dict[str, str]) -> str:
    info = basis.info
    lines = [
        f"# Feature exploration: `{basis_name}` at `{info.site}`",
        "",
        f"Basis: {info.d_sae} features over `{info.site}` (d_in {info.d_in}), fitted on run "
        f"`{info.run.name}` at {len(info.checkpoints)} checkpoints. Probe: {ex.probe}, every "
        "read's answer position. Families group features whose mean-activation trajectories "
        "correlate; births are the first checkpoint from which a feature stays at half its "
        "peak or more.",
        "",
        "**Exploration suggests; specs decide.** A family found here is a hypothesis about "
        "this run: state it in a spec and test it on another split or seed.",
        "",
        "## Fit",
        "",
        "| step | explained variance | active fraction | dead features | reconstruction loss |",
        "|---:|---:|---:|---:|---:|",
    ]
    for step, m in sorted(info.metrics.items()):
        lines.append(
            f"| {step} | {m.explained_variance:.3f} | {m.active_fraction:.3f} | "
            f"{m.dead_features} | {m.reconstruction_loss:.3f} |"
        )
    lines += ["", "## Suggested families", ""]
    if ex.families:
        lines += ["| family | features | mean r | earliest birth |", "|---|---|---:|---:|"]
        for fam in ex.families:
            born = "—" if fam.birth is None else str(fam.birth)
            feats = ", ".join(map(str, fam.features))
            lines.append(f"| {fam.name} | {feats} | {fam.mean_correlation:.3f} | {born} |")
        lines += ["", "```hyp"]
        lines += [family_line(basis_name, f.name, f.features) for f in ex.families]
        lines += ["```", ""]
    else:
        lines += ["No two live features' trajectories correlate above the threshold.", ""]
    lines += ["## Figures", ""]
    for key, caption in (
        ("trajectories", "The most active features across training"),
        ("families", "Each suggested family's members"),
        ("heatmap", "Every feature's mean activation, scaled to its peak"),
        ("similarity", "Trajectory correlation between features"),
    ):
        if key in links:
            lines += [f"![{caption}]({links[key]})", ""]
    lines += [
        "## Features",
        "",
        "| feature | peak mean activation | at step | final active fraction | birth |",
        "|---:|---:|---:|---:|---:|",
    ]
    peak = ex.mean_activation.max(axis=0)
    for i in np.argsort(-peak, kind="stable"):
        at = ex.steps[int(np.argmax(ex.mean_activation[:, i]))]
        birth = ex.births[int(i)]
        lines.append(
            f"| f{i} | {peak[i]:.4g} | {at} | {ex.active_fraction[-1, i]:.3f} | "
            f"{'—' if birth is None else birth} |"
        )
    return "\n".join(lines) + "\n"


def write_report(ex: Exploration, basis: Basis, basis_name: str, out_dir: Path, name: str) -> Path:
    figure_dir = out_dir / "figures" / name
    peak = ex.mean_activation.max(axis=0)
    top = [int(i) for i in np.argsort(-peak, kind="stable")[:TOP_TRAJECTORIES] if peak[i] > 0]
    members = [i for fam in ex.families[:6] for i in fam.features][:TOP_TRAJECTORIES]
    figures = {
        "trajectories": trajectories_figure(ex, top, "most active features"),
        "families": trajectories_figure(ex, members, "members of the first families"),
        "heatmap": heatmap_figure(ex),
        "similarity": similarity_figure(ex),
    }
    links = {}
    for key, png in figures.items():
        atomic_write_bytes(figure_dir / f"{key}.png", png)
        links[key] = f"figures/{name}/{key}.png"
    path = out_dir / f"{name}.md"
    atomic_write_text(path, render(ex, basis, basis_name, name, links))
    return path
