"""Two runs of `quadlens reproduce` on the same seeds, side by side: how often they agree on the verdict and
on the key frequencies, and each one's bound figures on the seeds both hold (docs/study.md).

    python benchmarks/compare_studies.py results/study151/models.csv runs/cpustudy/models.csv \
        --names gpu,cpu [--seeds 0-63] [--json results/cpu_vs_gpu_study.json]

Each run's figures are given over the seeds both runs hold, for all models and for the pizzas, per tier:
certified fraction (median, minimum, models at 100 % and at 99 % or more) and each model's maximum B/truth
(median, largest, models within 3×), with the bound schema versions they were measured with, and the inputs
where a bound fell below the truth (violations) summed over the models.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from quadlens.cli import parse_seeds

TIERS = ("lipschitz", "arcs", "arcs_grouped", "quadratic", "quadratic_exact_c")


def read(path: Path) -> dict[int, dict]:
    """``models.csv`` as {seed: row}."""
    with open(path, newline="") as f:
        return {int(row["seed"]): row for row in csv.DictReader(f)}


def frequencies(row: dict) -> frozenset[str]:
    return frozenset(f for f in row["frequencies"].split(";") if f)


def figure(values: list[float]) -> dict:
    """The distribution of one figure over models."""
    x = np.array(values, dtype=float)
    return {"n": len(x), "median": float(np.median(x)), "min": float(x.min()), "max": float(x.max())} if len(x) else {}


def tier_figures(rows: list[dict], tier: str) -> dict:
    certified = [float(r[f"bound_{tier}_certified_fraction"]) for r in rows if r.get(f"bound_{tier}_certified_fraction")]
    tightness = [float(r[f"bound_{tier}_tightness_max"]) for r in rows if r.get(f"bound_{tier}_tightness_max")]
    violations = [int(float(r[f"bound_{tier}_violations"])) for r in rows if r.get(f"bound_{tier}_violations")]
    return {"violations": sum(violations), "checked_models": len(violations),
            "certified_fraction": {**figure(certified), "at_100": sum(c == 1.0 for c in certified),
                                   "at_least_99": sum(c >= 0.99 for c in certified)},
            "tightness_max": {**figure(tightness), "within_3": sum(t <= 3 for t in tightness)}}


def run_figures(rows: list[dict]) -> dict:
    pizzas = [r for r in rows if r["verdict"] == "pizza"]
    return {"schema_versions": sorted({r.get("bound_schema_version", "") for r in rows}),
            "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in sorted({r["verdict"] for r in rows})},
            "all": {tier: tier_figures(rows, tier) for tier in TIERS},
            "pizzas": {tier: tier_figures(pizzas, tier) for tier in TIERS}}


def compare(a: dict[int, dict], b: dict[int, dict], names: tuple[str, str], only: list[int] | None = None) -> dict:
    seeds = sorted(set(a) & set(b) & set(only or a))
    differ = [s for s in seeds if a[s]["verdict"] != b[s]["verdict"] or frequencies(a[s]) != frequencies(b[s])]
    return {"seeds": len(seeds),
            "same_verdict": sum(a[s]["verdict"] == b[s]["verdict"] for s in seeds),
            "same_frequencies": sum(frequencies(a[s]) == frequencies(b[s]) for s in seeds),
            "same_frequencies_both_pizza": sum(frequencies(a[s]) == frequencies(b[s]) for s in seeds
                                               if a[s]["verdict"] == b[s]["verdict"] == "pizza"),
            "both_pizza": sum(a[s]["verdict"] == b[s]["verdict"] == "pizza" for s in seeds),
            "differences": {s: {names[0]: f"{a[s]['verdict']} {a[s]['frequencies']}",
                                names[1]: f"{b[s]['verdict']} {b[s]['frequencies']}"} for s in differ},
            names[0]: run_figures([a[s] for s in seeds]), names[1]: run_figures([b[s] for s in seeds])}


def table(result: dict, names: tuple[str, str]) -> str:
    """The pizzas' figures per run and tier, one line each."""
    lines = [f"{result['seeds']} seeds in both; same verdict {result['same_verdict']}, same key frequencies "
             f"{result['same_frequencies']} (of {result['both_pizza']} pizzas in both: "
             f"{result['same_frequencies_both_pizza']})",
             f"{'run':4} {'tier':18} {'schema':7} {'pizzas':>6}  {'certified median':>16}  {'min':>7}  {'100 %':>5}  "
             f"{'>=99 %':>6}  {'B/truth max: median':>19}  {'largest':>7}  {'within 3x':>9}"]
    for name in names:
        run = result[name]
        for tier, f in run["pizzas"].items():
            c, t = f["certified_fraction"], f["tightness_max"]
            if not c:
                continue
            lines.append(f"{name:4} {tier:18} {','.join(run['schema_versions']):7} {c['n']:6}  "
                         f"{100 * c['median']:15.2f}%  {100 * c['min']:6.2f}%  {c['at_100']:5}  "
                         f"{c['at_least_99']:6}  {t.get('median', float('nan')):19.2f}  "
                         f"{t.get('max', float('nan')):7.2f}  {t['within_3']:9}")
    lines += [f"{name}: violations " + ", ".join(f"{tier} {f['violations']} in {f['checked_models']} models"
                                             for tier, f in result[name]["all"].items()) for name in names]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--names", default="a,b", help="What to call the two runs.")
    parser.add_argument("--seeds", help="Only these seeds ('0-63', '1,4,7-9'); default: all both runs hold.")
    parser.add_argument("--json", type=Path, help="Write the whole comparison here (per seed differences too).")
    args = parser.parse_args()
    names = tuple(args.names.split(","))
    if len(names) != 2:
        parser.error("--names takes two names, comma-separated")
    result = compare(read(args.a), read(args.b), names, parse_seeds(args.seeds) if args.seeds else None)
    print(table(result, names))
    for seed, runs in result["differences"].items():
        print(f"seed {seed}: " + "; ".join(f"{name} {value}" for name, value in runs.items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
