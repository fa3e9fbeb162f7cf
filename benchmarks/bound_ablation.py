"""What each step of the linear bound buys: certified fractions and tightness of its variants on one model.

    python benchmarks/bound_ablation.py                        # the bundled model
    python benchmarks/bound_ablation.py runs/x/seed_0003.safetensors

Each row is one variant of ``linear_error``; columns give counted operations (bound alone), B/truth over
inputs, and the certified fraction: the explanation's margin (32 competitors) against B, and the competitor
certificate with 8, 16 and 32 outputs checked one by one (docs/bounds.md §3b).
"""

from __future__ import annotations

import argparse

import numpy as np

import quadlens
from quadlens.bounds import Ops, brute_force, linear_error, nearest_competitors
from quadlens.clusters import build_clusters
from quadlens.neurons import fit_neurons

VARIANTS = {
    "signed bands, |E(c*)| + peak, no narrowing, no directions, T = 10":
        dict(band_iterations=0, directions=0, tracked_extra=10),
    "+ 4 principal directions, T = 6": dict(band_iterations=0),
    "+ 1 narrowing": dict(band_iterations=1),
    "+ 2 narrowings (**`arcs`**)": dict(),
    "4 narrowings": dict(band_iterations=4),
    "`arcs` + 4 exact differences per cluster": dict(exact_differences=4),
    "`arcs` with 2 waveform groups": dict(waveform_groups=2),
    "`arcs` with 4 waveform groups": dict(waveform_groups=4),
    "4 waveform groups + 4 exact differences per group": dict(waveform_groups=4, exact_differences=4),
    "6 waveform groups + 4 exact differences per group": dict(waveform_groups=6, exact_differences=4),
    "4 waveform groups + 8 exact differences per group": dict(waveform_groups=4, exact_differences=8),
    "4 waveform groups + 16 exact differences per group (**`arcs_grouped`**)": dict(waveform_groups=4,
                                                                                   exact_differences=16),
    "8 waveform groups + 16 exact differences per group": dict(waveform_groups=8, exact_differences=16),
}
EXACT_OVER_C = {"`arcs` with the exact maximum over c (O(p³), not linear)": dict(),
                "`arcs_grouped` with the exact maximum over c (O(p³), not linear)": dict(waveform_groups=4,
                                                                                         exact_differences=16)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="checkpoint (default: the bundled model)")
    args = parser.parse_args()
    tables = quadlens.separable_tables(quadlens.load_model(args.model))
    clusters = build_clusters(fit_neurons(tables), tables.b_in)
    truth, _, _, _ = brute_force(tables, clusters, "cpu")
    competitors = {J: nearest_competitors(tables, clusters, Ops(), J) for J in (8, 16, 32)}
    margin = competitors[32].lower_bound()
    print("| variant | ops | B/truth median | max | certified: M > B | certificate, 8 outputs | 16 | 32 |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [(name, options, False) for name, options in VARIANTS.items()]
    rows += [(name, options, True) for name, options in EXACT_OVER_C.items()]
    for name, options, exact_over_c in rows:
        ops = Ops()
        error = linear_error(tables, clusters, True, ops, **options)
        bound = error.bound(ops, exact_over_c)
        ratio = bound / np.maximum(truth, 1e-12)
        certified = [(margin > bound).mean()]
        for J in (8, 16, 32):
            differences = error.differences(competitors[J].steps, Ops())
            certified.append((competitors[J].proven_model_margin(differences, bound) > 0).mean())
        print(f"| {name} | {ops.count:.2g} | {np.median(ratio):.2f} | {ratio.max():.1f} | "
              + " | ".join(f"{100 * c:.1f} %" for c in certified) + " |", flush=True)


if __name__ == "__main__":
    main()
