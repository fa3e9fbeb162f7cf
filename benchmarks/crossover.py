"""Where `arcs` passes 100× brute force in wall time: the tier timed in full at large p, brute force estimated.

    python benchmarks/crossover.py                       # p in 457 1279 2053 2999, 24 rows of brute force each
    python benchmarks/crossover.py --ps 911 --full       # brute force in full too, to check the estimate

Brute force at p = 2999 would take hours, so it runs on a sample: ``certify.brute_force`` on its first ``--rows``
rows a (each row does the same work), timed and scaled to all p rows; its set-up (the explanation's table, the
arrays) is timed apart, with no row, and added once. The models are bound_scaling.py's synthetic pizzas
(d_mlp = 4p). The tier runs as a user's first ``quadlens bound`` would meet it, after the compiled kernels are
loaded, and then again (``--repeat``): the difference is what first touches of memory cost.

``--json FILE`` appends this run (date, machine, ``bound.json`` schema version, command, rows) to the runs already
in FILE, so that runs at different p, or before and after a change to the bounds, sit side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bound_scaling import synthetic
from runlog import append_run

from quadlens.certify import brute_force, load_compiled_kernels, run_tier
from quadlens.clusters import build_clusters
from quadlens.neurons import fit_neurons


def estimated_brute_force(tables, clusters, rows: int) -> float:
    """Seconds brute force would take on every row, from its first ``rows`` rows a (its set-up timed apart)."""
    setup = brute_force(tables, clusters, device="cpu", rows=0)[3]
    sampled = brute_force(tables, clusters, device="cpu", rows=rows)[3]
    return setup + (sampled - setup) * tables.p / min(rows, tables.p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ps", type=int, nargs="*", default=[457, 1279, 2053, 2999])
    parser.add_argument("--rows", type=int, default=24, help="rows a of brute force timed at each p")
    parser.add_argument("--tier", default="arcs")
    parser.add_argument("--full", action="store_true", help="also run brute force on every row")
    parser.add_argument("--repeat", type=int, default=2, help="runs of the tier at each p; the first is reported")
    parser.add_argument("--json", type=Path, help="append this run to the runs logged here")
    args = parser.parse_args()
    load_compiled_kernels()
    rows = []
    for p in args.ps:
        tables = synthetic(p)
        clusters = build_clusters(fit_neurons(tables), tables.b_in)
        sampled_rows = min(args.rows, p)
        estimate = estimated_brute_force(tables, clusters, sampled_rows)
        full = brute_force(tables, clusters, device="cpu")[3] if args.full else None
        runs = [run_tier(args.tier, tables, clusters) for _ in range(max(args.repeat, 1))]
        tier = runs[0]
        row = {"p": p, "d_mlp": tables.d_mlp, "brute_force_estimate_seconds": estimate, "sampled_rows": sampled_rows,
               "brute_force_seconds": full, "tier": args.tier, "tier_seconds": tier.seconds,
               "tier_seconds_later_runs": [run.seconds for run in runs[1:]], "tier_ops": tier.ops,
               "certified_fraction": float(tier.certified.mean()), "max_bound": float(np.max(tier.bound))}
        rows.append(row)
        later = "".join(f", then {run.seconds:.2f} s" for run in runs[1:])
        print(f"p={p} d_mlp={tables.d_mlp}: brute force ≈ {estimate:.1f} s (from {sampled_rows} of {p} rows)"
              + (f", in full {full:.1f} s" if full else "") + f"; {args.tier} {tier.seconds:.2f} s "
              f"({estimate / tier.seconds:.0f}× faster{later}), certified {tier.certified.mean():.4f}", flush=True)
    if args.json:
        append_run(args.json, rows=rows)


if __name__ == "__main__":
    main()
