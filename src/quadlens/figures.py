"""Figures of an explanation and its bounds, for papers and notebooks: phase doubling, quadrature rectangles,
logits, error ladder, the bounds' frontier and their map over inputs, a study's distributions.

Each drawing function returns a matplotlib ``Figure`` made without pyplot, so importing this module leaves the
caller's backend alone (a notebook shows the figure inline) and nothing is kept in pyplot's registry;
``save`` writes one atomically as PNG, PDF or SVG (the last two vector, for a paper).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .certify import BoundReport
from .clusters import lens_parameters
from .explain import Explanation
from .files import atomic_write_bytes
from .fourier import wrap
from .ladder import by_sum_and_difference
from .lens import lobe
from .text import count, percent


FORMATS = ("png", "pdf", "svg")  # what ``save`` writes, named by the file's suffix


def checked_format(format: str) -> str:
    """``format`` if ``save`` writes it, or a ValueError that names it and the formats there are."""
    if format not in FORMATS:
        raise ValueError(f"figure format {format!r} is not one of {', '.join(FORMATS)}")
    return format


def encoded(fig: Figure, format: str = "png", dpi: int = 150) -> bytes:
    """The figure as the bytes of a PNG, PDF or SVG file (``dpi`` sets the PNG's resolution)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=checked_format(format), dpi=dpi)
    return buffer.getvalue()


def png(fig: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes."""
    return encoded(fig, "png", dpi)


def save(fig: Figure, path: Path, dpi: int = 150) -> Path:
    """Write the figure to ``path`` in the format its suffix names (.png, .pdf or .svg), atomically: readers see
    the old file or the whole new one."""
    atomic_write_bytes(path, encoded(fig, path.suffix.lower().lstrip("."), dpi))
    return path


def _pictured(explanation: Explanation) -> Explanation:
    """``explanation`` if it has clusters and a ladder to draw (a pizza), or a ValueError that says why not."""
    if not explanation.fits_picture:
        raise ValueError(f"nothing to draw: {explanation.no_picture()}")
    return explanation


def phase_doubling(explanation: Explanation) -> Figure:
    """Output phase ψ against input phase φ, per cluster, with the line ψ = 2φ + ψ0."""
    _pictured(explanation)
    fig = Figure(figsize=(5, 4.5), layout="tight")
    ax = fig.subplots()
    line = np.linspace(-np.pi, np.pi, 400)
    for report in explanation.clusters:
        c = report.cluster
        points = ax.scatter(c.phi, wrap(c.psi), s=8, label=f"k={c.frequency} (R={c.doubling_resultant:.4f})")
        ideal = wrap(2 * line + c.doubling_mean)
        ideal[np.abs(np.diff(ideal, prepend=ideal[0])) > np.pi] = np.nan
        ax.plot(line, ideal, color=points.get_facecolor()[0], lw=0.8, alpha=0.6)
    ax.set(xlabel="input phase φ (rad)", ylabel="output phase ψ (rad)", title="Phase doubling: ψ ≈ 2φ",
           xlim=(-np.pi, np.pi), ylim=(-np.pi, np.pi))
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _lobe(act_fn: str, scale: float, theta: np.ndarray) -> np.ndarray:
    """The quadrature's integrand act(s cos θ)/s · cos 2θ (relu(cos θ) cos 2θ for relu)."""
    return lobe(act_fn, scale, theta) * np.cos(2 * theta)


def quadrature(explanation: Explanation) -> Figure:
    """Per cluster, relu(cos θ)·cos 2θ with one rectangle per neuron: width ∝ its weight, at its phase."""
    n = len(_pictured(explanation).clusters)
    act_fn = explanation.model_config["act_fn"]
    fig = Figure(figsize=(3.6 * n, 3.2), layout="tight")
    axes = fig.subplots(1, n, squeeze=False)
    theta = np.linspace(-np.pi, np.pi, 1000)
    for ax, report in zip(axes[0], explanation.clusters):
        c = report.cluster
        scale = 2 * lens_parameters(c)["scale"]
        curve = _lobe(act_fn, scale, theta)
        nodes = wrap(c.phi)
        widths = 2 * np.pi * c.weights / c.total_weight
        ax.bar(nodes, _lobe(act_fn, scale, nodes), width=widths, alpha=0.45, color="tab:orange", edgecolor="none")
        ax.plot(theta, curve, color="black", lw=1)
        ax.set(title=f"k={c.frequency}: error {100 * report.rule.continuous_rel:.1f}% "
                     f"(equal w: {100 * report.baselines['equal_weights'].continuous_rel:.0f}%)",
               xlabel="θ = φ_i (offset 0)", xlim=(-np.pi, np.pi))
        ax.title.set_fontsize(8)
    axes[0][0].set_ylabel(f"{act_fn}(s cos θ)/s · cos 2θ" if act_fn != "relu" else "relu(cos θ) cos 2θ")
    return fig


def logits_model_vs_lens(explanation: Explanation) -> Figure:
    """Correct logit (centred) over (a+b, a−b): the model, the integral with harmonics (L3), and L∞."""
    _pictured(explanation)
    panels = [("model (L0)", explanation.level("L0", None)), ("integral, with 2k (L3)", explanation.level("L3", True)),
              ("closed form L∞", explanation.level("Linf", False))]
    tables = [by_sum_and_difference(level.correct_logit - level.mean_logit) for _, level in panels]
    vmin, vmax = min(t.min() for t in tables), max(t.max() for t in tables)
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (title, _), table in zip(axes, panels, tables):
        image = ax.imshow(table, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set(title=title, xlabel="a − b (mod p)", ylabel="a + b (mod p)")
    fig.colorbar(image, ax=axes, shrink=0.9, label="correct logit − mean logit")
    return fig


def error_ladder(explanation: Explanation) -> Figure:
    """Max error in logit differences and worst margin at each level, with and without the 2k harmonic."""
    _pictured(explanation)
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_err, ax_margin = fig.subplots(1, 2)
    names = ["L1", "L2", "L3"]
    x = np.arange(len(names))
    for offset, harmonics, label in ((-0.2, False, "key frequency k"), (0.2, True, "k and 2k")):
        levels = [explanation.level(name, harmonics) for name in names]
        ax_err.bar(x + offset, [lv.max_logit_diff_error for lv in levels], width=0.4, label=label)
        ax_margin.bar(x + offset, [lv.min_margin for lv in levels], width=0.4, label=label)
    model = explanation.level("L0", None)
    ax_margin.axhline(model.min_margin, color="black", ls="--", lw=1, label=f"model ({model.min_margin:.2f})")
    ax_margin.axhline(0, color="grey", lw=0.5)
    for ax, title, unit in ((ax_err, "max error in logit differences vs model", "max |error| (logits)"),
                            (ax_margin, "worst margin", "min over inputs of the margin (logits)")):
        ax.set_xticks(x, names)
        ax.set(title=title, ylabel=unit)
    fig.legend(*ax_margin.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def frontier(report: BoundReport) -> Figure:
    """Cost–tightness frontier: operations against certified fraction, one point per tier and brute force."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    fig = Figure(figsize=(7.5, 4), layout="tight")
    ax = fig.subplots()
    markers = "osD^vP<>"
    for i, tier in enumerate(report.tiers):
        ax.scatter(tier.ops, tier.certified.mean(), s=45, zorder=3, marker=markers[i % len(markers)],
                   label=f"{tier.name}: {tier.cost}")
    ops = [tier.ops for tier in report.tiers]
    if report.has_truth:
        accuracy = float((report.model_margin > 0).mean())
        ax.scatter(report.brute_force_ops, accuracy, marker="*", s=140, color="black", zorder=3,
                   label="brute force (the model's accuracy): O(p³·d_mlp)")
        ops.append(report.brute_force_ops)
    ax.set(xscale="log", xlabel="arithmetic operations (counted)", ylabel="certified fraction of inputs",
           ylim=(-0.05, 1.05), title=f"cost and certified fraction per tier (p={report.p}, d_mlp={report.d_mlp})")
    decades = np.log10(max(ops) / max(min(ops), 1))
    if decades > 3:
        ax.xaxis.set_major_locator(LogLocator(base=10))
    else:  # a label at 1, 2 and 5 per decade when the tiers span few decades
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(np.inf, np.inf)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig


def bound_vs_truth(report: BoundReport) -> Figure:
    """The true error (where brute force ran) and each tier's bound over (a+b, a−b), on one logarithmic colour
    scale (bounds span orders of magnitude across tiers); each tier's title gives its B/truth and certified share,
    and its uncertified inputs are outlined."""
    from matplotlib.colors import LogNorm

    panels = [("true error (brute force)", report.truth, None)] if report.has_truth else []
    for tier in report.tiers:
        summary = report.tier_summary(tier)
        tightness = ("" if summary["tightness_median"] is None else
                     f"B/truth median {summary['tightness_median']:.2f}, max {summary['tightness_max']:.2f}; ")
        panels.append((f"{tier.name}\n{tightness}{percent(summary['certified_fraction'])} certified",
                       tier.bound, tier.certified))
    vmax = max(float(values.max()) for _, values, _ in panels)
    scale = report.truth if report.has_truth else np.concatenate([tier.bound.ravel() for tier in report.tiers])
    positive = scale[scale > 0]
    vmin = min(float(np.quantile(positive, 0.01)) if positive.size else vmax, vmax) / 1.01
    norm = LogNorm(vmin=max(vmin, 1e-6 * vmax, 1e-300), vmax=vmax)
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(3.6 * columns, 3.5 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, (title, values, certified) in zip(axes.ravel(), panels):
        image = ax.imshow(np.maximum(by_sum_and_difference(values), norm.vmin), origin="lower", aspect="auto",
                          norm=norm, cmap="magma")
        if certified is not None and not certified.all():
            ax.contour(by_sum_and_difference((~certified).astype(float)), levels=[0.5], colors="cyan",
                       linewidths=0.6)
        ax.set_title(title, fontsize=8.5)
        ax.set(xlabel="a − b (mod p)", ylabel="a + b (mod p)")
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    label = ("max_c |err(c*) − err(c)|, or B (log)" if report.has_truth
             else "B: a bound on max_c |err(c*) − err(c)| (log)")
    fig.colorbar(image, ax=axes, shrink=0.9, label=label)
    against = "against the true error " if report.has_truth else ""
    fig.suptitle(f"bounds {against}(p={report.p}, d_mlp={report.d_mlp}); cyan outlines: inputs not certified",
                 fontsize=10)
    return fig


def write_bound_figures(report: BoundReport, out_dir: Path, format: str = "png") -> list[Path]:
    """frontier and bound_vs_truth (bounds: the bounds alone, without brute force), as PNG, PDF or SVG files."""
    checked_format(format)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "bound_vs_truth" if report.has_truth else "bounds"
    return [save(frontier(report), out_dir / f"frontier.{format}"),
            save(bound_vs_truth(report), out_dir / f"{name}.{format}")]


def distributions(rows: list[dict], columns: Sequence[str]) -> Figure:
    """Histograms of a study's headline figures across its models, one panel per column of its table."""
    panels = -(-len(columns) // 2)
    fig = Figure(figsize=(3.4 * panels, 6), layout="tight")
    axes = fig.subplots(2, panels)
    for ax, column in zip(axes.ravel(), columns):
        ax.hist([r[column] for r in rows if r.get(column) is not None], bins=20, color="tab:blue", alpha=0.8)
        ax.set_title(column, fontsize=9)
    for ax in axes.ravel()[len(columns):]:
        ax.axis("off")
    fig.suptitle(count(len(rows), "model"))
    return fig


FIGURES = {"phase_doubling": phase_doubling, "quadrature": quadrature, "logits": logits_model_vs_lens,
           "error_ladder": error_ladder}


def write_figures(explanation: Explanation, out_dir: Path, format: str = "png") -> list[Path]:
    """Write every figure into ``out_dir`` as PNG, PDF or SVG files; nothing for a model the explanation does
    not fit."""
    checked_format(format)
    if not explanation.fits_picture:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    return [save(draw(explanation), out_dir / f"{name}.{format}") for name, draw in FIGURES.items()]
