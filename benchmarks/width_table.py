"""How the explanation and its bounds change with the MLP's width: a `quadlens sweep` over d_mlp, summarised
per width (docs/study.md, "Width").

    quadlens sweep --p 59 --d-mlp 64,128,256,512,1024 --seeds 0-5 --workers 2 --out runs/width
    python benchmarks/width_table.py runs/width/models.csv [--json results/width/summary.json] \
        [--figure results/width/width.png]

Per width: the verdicts, the models at 100 % accuracy, and over the pizzas the median neurons per cluster, the
mean quadrature error of the clusters' own rules and of two baselines of the same total weight (equal weights at
the model's phases, as many evenly spaced nodes; docs/explain.md), L3's worst margin, the largest error of the
model against L3 (brute force), each bound tier's certified fraction (median and lowest) and each model's maximum
B/truth (median).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

TIERS = ("arcs", "arcs_grouped", "quadratic_exact_c")
# each cluster's own rule and the two baselines (docs/explain.md)
RULES = {"own rule": "quadrature_error_rel_mean", "equal weights": "quadrature_error_equal_weights_mean",
         "evenly spaced": "quadrature_error_evenly_spaced_mean"}


def read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def neurons_per_cluster(row: dict) -> float:
    """Live neurons that fit no cluster (mixed) are left out, as are dead ones."""
    return (int(row["d_mlp"]) - int(float(row["n_dead"])) - int(float(row["n_mixed"]))) / int(float(row["n_clusters"]))


def median(rows: list[dict], column: str) -> float | None:
    values = [float(r[column]) for r in rows if r.get(column) not in (None, "")]
    return float(np.median(values)) if values else None


def width_figures(rows: list[dict]) -> dict:
    pizzas = [r for r in rows if r["verdict"] == "pizza"]
    out = {"models": len(rows), "pizzas": len(pizzas),
           "fully_accurate": sum(float(r["accuracy"]) == 1.0 for r in rows),
           "neurons_per_cluster": float(np.median([neurons_per_cluster(r) for r in pizzas])) if pizzas else None}
    for column in (*RULES.values(), "L3_k2k_min_margin", "brute_force_max_error"):
        out[column] = median(pizzas, column)
    for tier in TIERS:
        certified = [float(r[f"bound_{tier}_certified_fraction"]) for r in pizzas]
        out[tier] = {"certified_median": float(np.median(certified)) if certified else None,
                     "certified_min": min(certified, default=None),
                     "tightness_max_median": median(pizzas, f"bound_{tier}_tightness_max")}
    return out


def markdown(figures: dict[int, dict]) -> str:
    def cell(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    lines = ["| d_mlp | pizzas | 100 % accurate | neurons per cluster | quadrature error: "
             + ", ".join(RULES) + " | L3 worst margin | max error vs L3 | "
             + " | ".join(f"`{t}` certified (median, lowest) | `{t}` max B/truth" for t in TIERS)
             + " |", "|" + "---|" * (7 + 2 * len(TIERS))]
    for width, f in figures.items():
        tiers = " | ".join(f"{cell(f[t]['certified_median'], '.2%')}, {cell(f[t]['certified_min'], '.2%')} | "
                           f"{cell(f[t]['tightness_max_median'], '.2f')}" for t in TIERS)
        lines.append(f"| {width} | {f['pizzas']} of {f['models']} | {f['fully_accurate']} | "
                     f"{cell(f['neurons_per_cluster'], '.0f')} | "
                     f"{', '.join('–' if f[column] is None else f'{100 * f[column]:.2g} %' for column in RULES.values())} | "
                     f"{cell(f['L3_k2k_min_margin'], '.2f')} | {cell(f['brute_force_max_error'], '.2f')} | {tiers} |")
    return "\n".join(lines)


def figure(rows: list[dict]):
    """Two panels over the pizzas: each rule's mean quadrature error against neurons per cluster (log-log), and the
    largest error of the model against L3 beside L3's worst margin, against d_mlp."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pizzas = [r for r in rows if r["verdict"] == "pizza"]
    n = np.array([neurons_per_cluster(r) for r in pizzas])
    width = np.array([int(r["d_mlp"]) for r in pizzas])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for (rule, column), marker in zip(RULES.items(), "osv"):
        left.loglog(n, [float(r[column]) for r in pizzas], marker, alpha=0.7, label=rule)
    left.set(xlabel="neurons per cluster", ylabel="mean quadrature error (relative)",
             title="quadrature error of the pizzas' clusters")
    left.set_xticks([t for t in (10, 20, 50, 100, 200, 500) if n.min() / 2 <= t <= n.max() * 2])
    left.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    left.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.legend()
    for column, label in (("brute_force_max_error", "largest |error| of the model against L3"),
                          ("L3_k2k_min_margin", "L3's worst margin")):
        right.loglog(width, [float(r[column]) for r in pizzas], "o", alpha=0.7, label=label, base=2)
    right.set(xlabel="d_mlp", ylabel="logit difference", title="explanation error against its margin")
    right.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.legend(loc="best")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models_csv", type=Path, help="a sweep's models.csv")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--figure", type=Path, help="also draw them here (PNG)")
    args = parser.parse_args()
    rows = read(args.models_csv)
    widths = sorted({int(r["d_mlp"]) for r in rows})
    figures = {w: width_figures([r for r in rows if int(r["d_mlp"]) == w]) for w in widths}
    print(markdown(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"by_width": figures}, indent=2) + "\n")
    if args.figure:
        from quadlens.figures import save

        args.figure.parent.mkdir(parents=True, exist_ok=True)
        save(figure(rows), args.figure)


if __name__ == "__main__":
    main()
