"""How many differences a − b per group `arcs_grouped` should evaluate exactly, and how: tightness against cost.

    python benchmarks/exact_differences_budget.py --p 911 --budgets 64,32 96,32 128,32 160,32 64,64
    python benchmarks/exact_differences_budget.py --p 1279 --budgets 128,32,own 128,32,shared --json out.json

Each budget ``D,E`` is `arcs_grouped` with D exact differences per cluster group and E·p exact inputs (the
shipped tier takes D = p // 4 within ``certify.EXACT_DIFFERENCES`` and E = p // 8 within ``certify.EXACT_INPUTS``),
everything else as shipped, on the synthetic pizza of ``bound_scaling.py`` at that p. A third field picks how the
differences are chosen: ``own`` (each group its D worst) or ``shared`` (16·D (group, difference) pairs by min-max,
``bounds._min_max_pairs``); without it, as shipped at that p (``certify.shares_differences``). Printed per budget:
wall time, counted operations, certified fraction and B/truth (median, maximum, share of inputs above 3), with the
`quadratic` tier as a reference. Brute force gives the truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bound_scaling import synthetic
from runlog import append_run

from quadlens.certify import BoundReport, Tier, brute_force, load_compiled_kernels, run_tier
from quadlens.clusters import build_clusters
from quadlens.neurons import fit_neurons
from quadlens.text import percent


CHOICE = {(): "", ("own",): " (each group its own)", ("shared",): " (shared by min-max)"}


def row(name: str, tier: Tier, report: BoundReport) -> dict:
    """The tier's figures as ``bound.json`` gives them (``BoundReport.tier_summary``), and its share of inputs above 3."""
    out = {"variant": name, **report.tier_summary(tier),
           "share_above_3": float((tier.bound / np.maximum(report.truth, 1e-12) > 3).mean())}
    print(f"| {name} | {tier.seconds:.2f} | {tier.ops:.3g} | {percent(out['certified_fraction'])} | "
          f"{out['tightness_median']:.2f} | {out['tightness_max']:.2f} | {100 * out['share_above_3']:.2f} % |", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, default=911)
    parser.add_argument("--budgets", nargs="+", default=["64,32", "96,32", "128,32", "160,32", "64,64"],
                        help="D,E[,own|shared]: exact differences per group, exact inputs per p, how chosen")
    parser.add_argument("--json", type=Path, help="append this run's results to this file")
    args = parser.parse_args()
    budgets = [budget.split(",") for budget in args.budgets]
    tables = synthetic(args.p)
    clusters = build_clusters(fit_neurons(tables), tables.b_in)
    load_compiled_kernels()
    report = BoundReport(tables.p, tables.d_mlp, [], *brute_force(tables, clusters, "cpu"))  # the truth, no tiers
    print(f"synthetic pizza p = {args.p}, d_mlp = {tables.d_mlp}\n")
    print("| variant | seconds | ops | certified | B/truth median | max | above 3 |\n|---|---|---|---|---|---|---|")
    rows = [row(f"{d} exact differences per group{CHOICE[tuple(how)]}, {e}·p exact inputs",
                run_tier("arcs_grouped", tables, clusters, exact_differences=int(d), exact_inputs=int(e),
                         **({"share_differences": how[0] == "shared"} if how else {})), report)
            for d, e, *how in budgets]
    rows.append(row("`quadratic` (reference)", run_tier("quadratic", tables, clusters), report))
    if args.json:
        append_run(args.json, p=args.p, d_mlp=tables.d_mlp, rows=rows)


if __name__ == "__main__":
    main()
