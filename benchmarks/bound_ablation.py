"""What each step of the linear bound buys: certified fractions and tightness of its variants on one model.

    python benchmarks/bound_ablation.py                        # the bundled model
    python benchmarks/bound_ablation.py runs/x/seed_0003.safetensors

Each row is one variant of ``linear_error`` (waveform groups, exact differences, exact inputs, ...) and of how
many inputs get the exact maximum over c
(``ErrorTerms.refine``, ranked with the 32 competitors' steps); columns give counted operations (bound
alone), B/truth over inputs, and the certified fraction: the explanation's margin (32 competitors)
against B, and the competitor certificate with 8, 16 and 32 outputs checked one by one (docs/bounds.md
§3b).
"""

from __future__ import annotations

import argparse

import numpy as np

import quadlens
from quadlens.bounds import least_gain, linear_error
from quadlens.certify import (EXACT_DIFFERENCES, EXACT_INPUTS, EXACT_LOOSE, EXACT_MAXIMA, brute_force,
                              exact_differences, exact_inputs)
from quadlens.clusters import build_clusters
from quadlens.competitors import nearest_competitors
from quadlens.decomposition import MISFIT_REACH
from quadlens.neurons import fit_neurons
from quadlens.ops import Ops
from quadlens.text import percent

GROUPED = dict(waveform_groups=4, exact_differences=16)
ALL = -1  # the exact maximum over c on every input: O(p³), not linear
VARIANTS = {  # name: (options of linear_error, exact maxima over c on this many times p inputs)
    "signed bands, |E(c*)| + peak, no narrowing, no directions, T = 10":
        (dict(band_iterations=0, directions=0, tracked_extra=10), 0),
    "+ 4 principal directions, T = 6": (dict(band_iterations=0), 0),
    "+ 1 narrowing (**`arcs`**)": (dict(), 0),
    "2 narrowings": (dict(band_iterations=2), 0),
    "4 narrowings": (dict(band_iterations=4), 0),
    "`arcs` + 4 exact differences per cluster": (dict(exact_differences=4), 0),
    "`arcs` with 2 waveform groups": (dict(waveform_groups=2), 0),
    "`arcs` with 4 waveform groups": (dict(waveform_groups=4), 0),
    "4 waveform groups + 4 exact differences per group": (dict(waveform_groups=4, exact_differences=4), 0),
    "6 waveform groups + 4 exact differences per group": (dict(waveform_groups=6, exact_differences=4), 0),
    "4 waveform groups + 8 exact differences per group": (dict(waveform_groups=4, exact_differences=8), 0),
    "4 waveform groups + 16 exact differences per group": (GROUPED, 0),
    "8 waveform groups + 16 exact differences per group": (dict(waveform_groups=8, exact_differences=16), 0),
    "4 groups + 16 differences, exact maximum over c on 4·p inputs": (GROUPED, 4),
    "4 groups + 16 differences, exact maximum over c on 8·p inputs": (GROUPED, 8),
    "4 groups + 16 differences, exact maximum over c on 16·p inputs": (GROUPED, 16),
    "4 groups + 16 differences, exact maximum over c on 32·p inputs": (GROUPED, 32),
    "`arcs` with the exact maximum over c on every input (O(p³), not linear)": (dict(), ALL),
    "4 groups + 16 differences, exact maximum over c on every input (O(p³), not linear)": (GROUPED, ALL),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="checkpoint (default: the bundled model)")
    args = parser.parse_args()
    tables = quadlens.separable_tables(quadlens.load_model(args.model))
    clusters = build_clusters(fit_neurons(tables), tables.b_in)
    truth, _, _, _ = brute_force(tables, clusters, "cpu")
    competitors = {J: nearest_competitors(tables, clusters, Ops(), J) for J in (8, 16, 32)}
    margin = competitors[32].lower_bound()
    D, (low, high) = exact_differences(tables.p), EXACT_DIFFERENCES
    E, (e_low, e_high) = exact_inputs(tables.p), EXACT_INPUTS
    tier = dict(GROUPED, exact_differences=D)
    variants = VARIANTS | {
        f"4 groups + {D} differences (p // 4 within {low}…{high}), exact maximum over c on 16·p inputs": (tier, EXACT_MAXIMA),
        "the same + exact hidden activations on 4·p inputs": (dict(tier, exact_inputs=4), EXACT_MAXIMA),
        "the same + exact hidden activations on 16·p inputs": (dict(tier, exact_inputs=16), EXACT_MAXIMA),
        "the same + exact hidden activations on 32·p inputs": (dict(tier, exact_inputs=32), EXACT_MAXIMA),
        f"{E}·p exact inputs (p // 8 within {e_low}…{e_high}) + the loose neurons exact on every input":
            (dict(tier, exact_inputs=E, exact_loose=EXACT_LOOSE, misfit_reach=np.inf), EXACT_MAXIMA),
        f"the same + the cluster neurons reaching past {MISFIT_REACH} exact too (**`arcs_grouped`**)":
            (dict(tier, exact_inputs=E, exact_loose=EXACT_LOOSE), EXACT_MAXIMA)}
    print("| variant | ops | B/truth median | max | certified: M > B | certificate, 8 outputs | 16 | 32 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (options, exact_maxima) in variants.items():
        ops = Ops()
        error = linear_error(tables, clusters, True, ops, **options)
        bound, floor = error.bound_and_floor(ops, exact_over_c=exact_maxima == ALL)
        bound = error.refine(bound, competitors[32].steps, max(exact_maxima, 0) * tables.p, ops)
        ratio = bound / np.maximum(truth, 1e-12)
        certified = [(margin > bound).mean()]
        gain = least_gain(floor, bound)
        for J in (8, 16, 32):
            gains = error.gains(competitors[J].steps, Ops())
            certified.append((competitors[J].proven_model_margin(gains, gain) > 0).mean())
        print(f"| {name} | {ops.count:.2g} | {np.median(ratio):.2f} | {ratio.max():.1f} | "
              + " | ".join(percent(c) for c in certified) + " |", flush=True)


if __name__ == "__main__":
    main()
