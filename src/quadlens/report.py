"""``quadlens report``: one self-contained HTML page (figures embedded) for a model or a study folder."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from . import __version__
from .certify import EXPLANATION, BoundReport
from .explain import Explanation
from .files import read_json
from .text import count, figure, named_figure, percent

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .muted { color: #666; }
.badge { display: inline-block; padding: 0.2em 0.7em; border-radius: 1em; color: white; font-weight: bold; }
.pizza { background: #2a9d4b; } .clock { background: #c98a00; } .nofit { background: #c0392b; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; } .scroll { overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; } th { background: #f4f4f4; }
td.left, th.left { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
p.plain { font-size: 1.05em; line-height: 1.5; }
"""


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _table(header: list[str], rows: list[list], left: int = 1) -> str:
    """An HTML table; floats to four figures (more where a value would read as whole), ``None`` (not known, e.g.
    without brute force) as ``-``."""
    def cell(i, value, tag):
        text = figure(value) if isinstance(value, float) else "-" if value is None else html.escape(str(value))
        return f'<{tag}{" class=left" if i < left else ""}>{text}</{tag}>'
    head = "".join(cell(i, h, "th") for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell(i, v, "td") for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class=scroll><table><tr>{head}</tr>{body}</table></div>'


def plain_words(e: Explanation, b: BoundReport | None) -> str:
    """The explanation in sentences, every number measured."""
    if not e.fits_picture:
        return (f"This model is <b>{html.escape(e.verdict)}</b>: no quadrature explanation is given. "
                f"It fails: {html.escape('; '.join(e.reasons))}.")
    clusters = [r.cluster for r in e.clusters]
    errors = [100 * r.rule.continuous_rel for r in e.clusters]
    equal = [100 * r.baselines["equal_weights"].continuous_rel for r in e.clusters]
    k_only, with_2k, model = e.level("L1", False), e.level("L1", True), e.level("L0", None)
    text = (f"This model is a <b>pizza</b>. Its MLP's {sum(len(c.neurons) for c in clusters)} clustered neurons "
            f"form {len(clusters)} clusters at frequencies {', '.join(str(c.frequency) for c in clusters)}. "
            f"In every cluster each neuron's output phase is its input phase doubled (smallest resultant "
            f"{min(c.doubling_resultant for c in clusters):.4f}), so each cluster is a quadrature rule for "
            f"∫ relu(cos θ) cos(2θ − Δ) dθ, one node per neuron. The trained weights integrate to within "
            f"{min(errors):.0f}–{max(errors):.0f} % of the exact value W_k/3π; equal weights at the same nodes "
            f"would be off by {min(equal):.0f}–{max(equal):.0f} %. Replacing every neuron by its key-frequency fit "
            f"leaves a worst margin of {k_only.min_margin:.2f}; adding the second harmonic 2k, which covers each "
            f"cluster's blind spots, restores it to {with_2k.min_margin:.2f} (the model's own: {model.min_margin:.2f}). "
            f"The integral explanation (L3) alone classifies {percent(e.level('L3', True).accuracy)} of inputs "
            f"correctly with worst margin {e.level('L3', True).min_margin:.2f}.")
    text += "".join(f" {html.escape(note)}" for note in [*e.few_angles_notes(), e.parity_note()] if note)
    if b is not None:
        best = max(b.tiers, key=lambda t: t.certified.mean())
        linear = max((t for t in b.tiers if t.cost == "O(p·d_mlp)"), key=lambda t: t.certified.mean(), default=None)
        against = f" against {b.brute_force_ops:.2g} for brute force" if b.has_truth else ""
        text += (f" Proven bounds on the distance between model and explanation certify "
                 f"{percent(best.certified.mean(), 2)} of inputs with the {best.name} tier "
                 f"({best.ops:.2g} operations{against})")
        if linear is not None and linear is not best:
            text += (f", and {percent(linear.certified.mean(), 2)} in time linear in the parameter count "
                     f"({linear.name}, {linear.ops:.2g} operations)")
        text += f"; {_checked(b)}."
    return text


def _checked(b: BoundReport) -> str:
    """What brute force says of the bounds, counted: how many inputs any tier's bound fell below the true error."""
    if not b.has_truth:
        return ("brute force was not run, so each certified share is a proven lower bound on the accuracy, and "
                "the bounds' tightness is not known")
    violations = {tier.name: b.violations(tier) for tier in b.tiers}
    if not any(violations.values()):
        return "no bound was below the brute-force error on any input"
    where = ", ".join(f"{count} input{'s' if count > 1 else ''} ({name})" for name, count in violations.items() if count)
    return f"<b>a bound was below the brute-force error on {where}</b>: an unsound bound, please report it"


def _verdict(e: Explanation) -> str:
    badge = {"pizza": "pizza", "clock": "clock"}.get(e.verdict, "nofit")
    return (f'<p><span class="badge {badge}">{html.escape(e.verdict)}</span> accuracy {percent(e.accuracy)} · '
            f'gradient symmetricity {e.gradient_symmetricity:.3f} · distance irrelevance {e.distance_irrelevance:.3f}</p>')


def _criteria(e: Explanation) -> str:
    return _table(["criterion", "measured", "threshold", "passed", "required"],
                  [[c.description, c.value, c.threshold, "yes" if c.passed else "NO", "yes" if c.required else "indicator"]
                   for c in e.criteria])


def _clusters(e: Explanation) -> str:
    return _table(["k", "neurons", "W_k", "doubling R", "φ−φ' R", "β (2k)", "κ", "quadrature error", "equal weights",
                   "evenly spaced"], [r.cells() for r in e.clusters], left=0)


def _ladder(e: Explanation) -> str:
    return _table(["level", "harmonics", "max logit-difference error", "worst margin", "accuracy", "loss"],
                  [[lv.level, lv.harmonics_label, lv.max_logit_diff_error, lv.min_margin, percent(lv.accuracy), lv.loss]
                   for lv in e.ladder + e.ablation], left=2)


def _tiers(b: BoundReport) -> str:
    summary = b.to_dict()
    brute = summary["brute_force"]
    return _table(
        ["tier", "cost", "operations", "seconds", "certified", "B/truth median", "B/truth max", "violations"],
        [[t["name"], t["cost"], float(t["ops"]), t["seconds"], percent(t["certified_fraction"]), t["tightness_median"],
          t["tightness_max"], t["violations"]] for t in summary["tiers"]]
        + ([["brute force", "O(p³·d_mlp)", float(brute["ops"]), brute["seconds"], percent(brute["accuracy"]),
             1.0, 1.0, "-"]] if brute else []), left=2)


def explanation_html(e: Explanation) -> str:
    """The explanation's verdict, criteria, clusters and ladder as HTML, without figures: a notebook's view of it."""
    parts = [_verdict(e), _criteria(e)]
    if e.fits_picture:
        parts += [_clusters(e), _ladder(e)]
    return "".join(parts)


def bounds_html(b: BoundReport) -> str:
    """The bound tiers' table as HTML, with what brute force says of them: a notebook's view of the report."""
    return f"<p>Explanation: {html.escape(EXPLANATION)}; {_checked(b)}.</p>{_tiers(b)}"


def model_report(name: str, e: Explanation, b: BoundReport | None, info: dict) -> str:
    """The HTML page for one model."""
    from .figures import FIGURES, bound_vs_truth, frontier, png

    parts = [f"<h1>{html.escape(name)}</h1>",
             f'<p class=muted>quadlens {__version__} · p={info["p"]}, d_model={info["d_model"]}, '
             f'{info["n_heads"]} heads, d_mlp={info["d_mlp"]}, {info["act_fn"]}, attention rate ρ={info["attention_rate"]}'
             + (f' · seed {e.model["seed"]}' if e.model.get("seed") is not None else "")
             + (f' · weights SHA-256 {e.model["weights_sha256"][:12]}…' if e.model else "") + '</p>',
             _verdict(e), "<h2>In plain words</h2>", f"<p class=plain>{plain_words(e, b)}</p>",
             "<h2>Criteria</h2>", _criteria(e)]
    if e.fits_picture:
        figures = {name: png(draw(e)) for name, draw in FIGURES.items()}
        parts += ["<h2>Clusters</h2>", _clusters(e),
                  _image(figures["phase_doubling"], "Output phase against input phase: ψ ≈ 2φ"),
                  _image(figures["quadrature"], "Each cluster's neurons as rectangles under relu(cos θ)·cos 2θ"),
                  "<h2>Error ladder</h2>", _ladder(e),
                  _image(figures["error_ladder"], "What each idealisation costs"),
                  _image(figures["logits"], "Correct logit over (a+b, a−b): model, integral, closed form")]
    if b is not None:
        parts += ["<h2>Bounds</h2>", f"<p>Explanation: {html.escape(EXPLANATION)}.</p>", _tiers(b),
                  _image(png(frontier(b)), "Cost against certified fraction"),
                  _image(png(bound_vs_truth(b)), "Bounds against the brute-force error" if b.has_truth else "Bounds per input")]
    return _page(name, parts)


def study_report(run_dir: Path) -> str:
    """The HTML page for a folder written by ``quadlens reproduce``, or by ``quadlens sweep``: there, a table of its
    configurations, then each configuration's study."""
    from .sweep import configuration_names, is_sweep_summary, sweep_rows

    summary = read_json(run_dir / "summary.json")
    if not is_sweep_summary(summary):
        return _page(f"study {run_dir.name}", [f"<h1>Study: {html.escape(run_dir.name)}</h1>",
                                               *_study_parts(run_dir, summary, 2)])
    parts = [f"<h1>Sweep: {html.escape(run_dir.name)}</h1>",
             _table(["configuration", "models", "verdicts", "share pizza"], sweep_rows(summary))]
    for name in configuration_names(summary):  # each configuration's summary is the sweep's, as in its table
        parts += [f"<h2>{html.escape(name)}</h2>", *_study_parts(run_dir / name, summary[name], 3)]
    return _page(f"sweep {run_dir.name}", parts)


def _study_parts(run_dir: Path, summary: dict, level: int) -> list[str]:
    """One study's summary, statistics, distributions and per-model table; its headings at ``level``."""
    from .study import statistic_rows, study_rows

    rows = study_rows(run_dir, summary)
    columns = ["seed", "verdict", "accuracy", "n_clusters", "frequencies", "doubling_resultant_min",
               "quadrature_error_rel_mean", "L3_k2k_min_margin", "bound_arcs_grouped_certified_fraction",
               "bound_arcs_grouped_tightness_max", "bound_quadratic_exact_c_certified_fraction"]
    return [f"<p class=plain>{count(summary['n_models'], 'model')}; verdicts {html.escape(str(summary['verdicts']))}; "
            f"clusters per model {html.escape(str(summary['clusters_per_model']))}.</p>",
            _table(["figure", "mean", "median", "min", "max"], statistic_rows(summary)),
            _image((run_dir / "distributions.png").read_bytes(), "Distributions across models"),
            f"<h{level}>Models</h{level}>",
            _table(columns, [[_study_cell(c, r.get(c)) for c in columns] for r in rows], left=2)]


def _study_cell(column: str, value):
    """A per-model table's cell: empty where the model has no such figure, a number as ``named_figure`` gives it."""
    if value is None:
        return ""
    return named_figure(column, value) if isinstance(value, float) else value


def _page(title: str, parts: list[str]) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
