"""How each bound tier scales with p against brute force: wall time, counted operations, fitted exponents.

    python benchmarks/bound_scaling.py                          # p in 59 113 227 457 911
    python benchmarks/bound_scaling.py --ps 59 113 --json out.json
    python benchmarks/bound_scaling.py --device cuda            # brute force on the GPU, the tiers on the CPU

Models have the pizza structure: synthetic from THEORY's formulas (4 clusters at key frequencies chosen to
separate the answers, ``quadlens.synthetic.separating_frequencies``; stratified phases, second harmonic
β = 0.1 at lock π, offset κ = 0.2) plus independent Gaussian noise in every entry, 2 % of the median
amplitude in F_a and F_b and 0.5 % in W_L (5e-5 of a W_L row's energy; the trained models below leave
7e-6 to 1e-4 outside their 7 largest frequencies), with d_mlp = 4p. Trained models are measured too: the
bundled one (p = 59, d_mlp = 512) and those in benchmarks/models/ (p = 20 and 63, not prime, and p = 113,
d_mlp = 512, trained on a CPU; p = 227, d_mlp = 908, and p = 457, d_mlp = 1828, trained on a GPU), or the
checkpoints given with --trained.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import quadlens
from quadlens.certify import bound_tables, explanation_terms
from quadlens.synthetic import pizza_spec, pizza_tables, separating_frequencies
from quadlens.text import percent


MODELS = Path(__file__).parent / "models"


def synthetic(p: int, noise: float = 0.02, output_noise: float = 0.005):
    spec = pizza_spec(p, separating_frequencies(p, seed=p), neurons_per_cluster=p, seed=p)
    return pizza_tables(spec, noise=noise, seed=p, output_noise=output_noise)


def measure(name: str, tables, device: str = "cpu") -> dict:
    start = time.perf_counter()
    clusters, parity = explanation_terms(tables)
    fit_seconds = time.perf_counter() - start
    report = bound_tables(tables, clusters, device=device, parity=parity)
    summary = report.to_dict()
    row = {"model": name, "p": tables.p, "d_mlp": tables.d_mlp, "clusters": len(clusters),
           "fit_seconds": fit_seconds, "brute_force": summary["brute_force"], "tiers": summary["tiers"]}
    print(f"{name}: p={tables.p} d_mlp={tables.d_mlp} brute {summary['brute_force']['seconds']:.2f}s "
          f"({summary['brute_force']['ops']:.3g} ops), " + ", ".join(
              f"{t['name']} {t['seconds']:.3f}s ({t['ops']:.3g} ops, x{t['speedup_vs_brute_force']:.0f}, "
              f"cert {percent(t['certified_fraction'])}, B/truth med {t['tightness_median']:.2f})"
              for t in summary["tiers"]), flush=True)
    return row


def exponents(rows: list[dict]) -> dict:
    """Least-squares slope of log(seconds) and log(ops) against log(p), per tier and for brute force."""
    ps = np.log([r["p"] for r in rows])
    out = {"brute_force": {key: float(np.polyfit(ps, np.log([r["brute_force"][key] for r in rows]), 1)[0])
                           for key in ("seconds", "ops")}}
    for i, tier in enumerate(rows[0]["tiers"]):
        out[tier["name"]] = {key: float(np.polyfit(ps, np.log([r["tiers"][i][key] for r in rows]), 1)[0])
                             for key in ("seconds", "ops")}
    return out


def markdown(rows: list[dict], fitted: dict) -> str:
    """BENCHMARKS.md's tables: each trained model's tiers, then the synthetic scaling grid and fitted exponents."""
    lines = []
    for row in (r for r in rows if r["model"] != "synthetic"):
        bf = row["brute_force"]
        lines += [f"{row['model']} (p = {row['p']}, d_mlp = {row['d_mlp']}; brute force: {bf['ops']:.3g} ops, "
                  f"{bf['seconds']:.2f} s, max error {bf['max_error']:.3g})", "",
                  "| tier | cost | ops | seconds | certified | min proven margin | B/truth median | B/truth max "
                  "| violations |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {t['name']} | {t['cost']} | {t['ops']:.2g} | {t['seconds']:.3f} | "
                  f"{percent(t['certified_fraction'])} | {t['min_proven_margin']:.2f} | {t['tightness_median']:.2f} | "
                  f"{t['tightness_max']:.2f} | {t['violations']} |" for t in row["tiers"]]
        lines.append("")
    names = [t["name"] for t in rows[-1]["tiers"]]
    lines += ["| p | d_mlp | brute force s (ops) | " + " | ".join(f"{n} s (ops ratio, time ratio)" for n in names) + " |",
              "|---" * (3 + len(names)) + "|"]
    for row in rows:
        if row["model"] != "synthetic":
            continue
        bf = row["brute_force"]
        lines.append(f"| {row['p']} | {row['d_mlp']} | {bf['seconds']:.2f} ({bf['ops']:.2g}) | " + " | ".join(
            f"{t['seconds']:.2f} ({t['ops_ratio_vs_brute_force']:.0f}×, {t['speedup_vs_brute_force']:.1f}×)"
            for t in row["tiers"]) + " |")
    lines += ["", "| p | accuracy | min model margin | max error | " + " | ".join(
        f"{n} certified (B/truth median, max)" for n in names) + " |", "|---" * (4 + len(names)) + "|"]
    for row in (r for r in rows if r["model"] == "synthetic"):
        bf = row["brute_force"]
        proofs = [f"{percent(t['certified_fraction'])} ({t['tightness_median']:.2f}, {t['tightness_max']:.1f})"
                  for t in row["tiers"]]
        lines.append(f"| {row['p']} | {percent(bf['accuracy'])} | {bf['min_model_margin']:.2f} | "
                     f"{bf['max_error']:.2f} | " + " | ".join(proofs) + " |")
    if fitted:
        lines += ["", "| | " + " | ".join(fitted) + " |", "|---" * (1 + len(fitted)) + "|"]
        lines += [f"| {key} | " + " | ".join(f"p^{fitted[n][key]:.2f}" for n in fitted) + " |"
                  for key in ("ops", "seconds")]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ps", type=int, nargs="*", default=[59, 113, 227, 457, 911])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--device", default="cpu", help="where brute force runs (the tiers always run on the CPU)")
    parser.add_argument("--trained", nargs="*", type=Path, default=sorted(MODELS.glob("*.safetensors")),
                        help="trained checkpoints to measure besides the bundled model")
    args = parser.parse_args()
    measure("warm-up (compiled kernels loaded, not reported)", synthetic(31), args.device)
    rows = [measure("bundled", quadlens.separable_tables(quadlens.load_model()), args.device)]
    rows += [measure(path.stem, quadlens.separable_tables(quadlens.load_model(path)), args.device)
             for path in args.trained]
    scaling = [measure("synthetic", synthetic(p), args.device) for p in args.ps]
    fitted = exponents(scaling) if len(scaling) > 1 else {}
    print("fitted exponents (time ∝ p^e, d_mlp = 4p):", json.dumps(fitted, indent=1))
    print(markdown(rows + scaling, fitted))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": {"platform": platform.platform(), "torch": torch.__version__,
                                   "threads": torch.get_num_threads(), "brute_force_device": args.device,
                                   "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
                       "rows": rows + scaling, "exponents": fitted}, f, indent=2)


if __name__ == "__main__":
    main()
