"""Soundness of every shipped tier, with its shipped settings, on many perturbed models of realistic size.

    python benchmarks/soundness_at_scale.py                  # 120 models, 0.3 s each at p ≤ 113 on 2 cores
    python benchmarks/soundness_at_scale.py --models 40 --json out.json   # appends the run to out.json
    python benchmarks/soundness_at_scale.py --trained runs/x/seed_*.safetensors   # other trained models

The hypothesis tests (tests/test_bounds.py) generate small models (p ≤ 31) and run each tier's argument under
many settings; this runs ``quadlens bound``'s own tiers (waveform groups, exact differences, exact inputs and
exact maxima at their p-dependent defaults) at p = 59 to 113, where those settings take the values users meet.
Each model is one of five families, drawn in turn, each with a random strength:
  trained     a trained model (the bundled one, 70 %, or the p = 113 one; or those given with --trained), every
              table perturbed by Gaussian noise
  synthetic   a noisy synthetic pizza at p = 59, 83 or 113 (or those given with --ps; random offset, harmonic,
              noise in F and in W_L)
  kinks       a synthetic pizza with many neurons' pre-activations exactly 0 on some input
  float32     a perturbed trained model with every table rounded to float32
  misfit      a trained model against an explanation whose phases, amplitudes, offsets and harmonics are perturbed
With --trained, only the three families that start from a trained model run. With --parity-neurons, the synthetic
and kinks families' models at an even p also have 1 to p neurons that compute parity (docs/study.md), which the
explanation's parity term then covers; a trained model's parity neurons are always covered.
A violation is an input where a tier's B is below brute force's error, or its proven model margin above the
model's true margin. Reports the violations (expected: 0) and each tier's certified fraction and B/truth range.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from runlog import append_run

import quadlens
from quadlens.certify import bound_tables
from quadlens.clusters import build_clusters
from quadlens.neurons import fit_neurons
from quadlens.parity import fit_parity
from quadlens.synthetic import misfitted, pizza_spec, pizza_tables, separating_frequencies, with_random_parity_neurons
from quadlens.tables import SeparableTables

MODELS = Path(__file__).parent / "models"
FAMILIES = ("trained", "synthetic", "kinks", "float32", "misfit")
SYNTHETIC_PS = (59, 83, 113)


def _perturbed(tables: SeparableTables, scale: float, rng: np.random.Generator) -> SeparableTables:
    """Every MLP table plus Gaussian noise of ``scale`` times its own standard deviation."""
    arrays = {name: getattr(tables, name) for name in ("F_a", "F_b", "b_in", "W_L")}
    return dataclasses.replace(tables, **{name: x + scale * x.std() * rng.normal(size=x.shape)
                                          for name, x in arrays.items()})


def _trained(rng: np.random.Generator, checkpoints: list[Path] | None) -> SeparableTables:
    if checkpoints:
        return quadlens.separable_tables(quadlens.load_model(checkpoints[rng.integers(len(checkpoints))]))
    path = MODELS / "pizza_p113_seed0.safetensors"
    model = quadlens.load_model(path) if rng.random() < 0.3 and path.exists() else quadlens.load_model()
    return quadlens.separable_tables(model)


def _synthetic(rng: np.random.Generator, ps: tuple[int, ...] = SYNTHETIC_PS,
               parity_neurons: bool = False) -> SeparableTables:
    """A noisy synthetic pizza at one of ``ps``; with ``parity_neurons``, at an even p, with 1 to p neurons that compute
    parity too, as half the models trained at p = 20 and 24 do (docs/study.md)."""
    p = int(rng.choice(ps))
    spec = pizza_spec(p, separating_frequencies(p, seed=int(rng.integers(1 << 30))),
                      neurons_per_cluster=int(rng.integers(p // 2, 2 * p)), beta=float(rng.uniform(-0.3, 0.3)),
                      kappa=float(rng.uniform(-0.3, 0.6)), seed=int(rng.integers(1 << 30)))
    tables = pizza_tables(spec, noise=float(rng.uniform(0, 0.15)), output_noise=float(rng.uniform(0, 0.05)),
                          seed=int(rng.integers(1 << 30)))
    return with_random_parity_neurons(tables, rng) if parity_neurons else tables


def _with_kinks(tables: SeparableTables, rng: np.random.Generator) -> SeparableTables:
    """A random share of the neurons moved onto their relu kink at one input each."""
    b_in = tables.b_in.copy()
    chosen = rng.choice(tables.d_mlp, size=int(rng.uniform(0.05, 0.5) * tables.d_mlp), replace=False)
    a, b = rng.integers(0, tables.p, (2, len(chosen)))
    b_in[chosen] = -(tables.F_a[a, chosen] + tables.F_b[b, chosen])
    return dataclasses.replace(tables, b_in=b_in)


def model(family: str, rng: np.random.Generator, checkpoints: list[Path] | None = None,
          ps: tuple[int, ...] = SYNTHETIC_PS, parity_neurons: bool = False) -> tuple[SeparableTables, list, float]:
    """One model of ``family`` (trained ones drawn from ``checkpoints`` if given, synthetic ones at one of ``ps``,
    with parity neurons at an even p where ``parity_neurons``), its explanation's clusters, and the perturbation's strength."""
    scale = float(rng.choice([0.003, 0.01, 0.03, 0.1, 0.3]))
    if family == "synthetic":
        tables = _synthetic(rng, ps, parity_neurons)
    elif family == "kinks":
        tables = _with_kinks(_synthetic(rng, ps, parity_neurons), rng)
    else:
        tables = _trained(rng, checkpoints)
        if family in ("trained", "float32"):
            tables = _perturbed(tables, scale, rng)
        if family == "float32":
            tables = dataclasses.replace(tables, **{name: getattr(tables, name).astype(np.float32).astype(np.float64)
                                                    for name in ("F_a", "F_b", "b_in", "W_L", "D_a", "D_b")})
    clusters = build_clusters(fit_neurons(tables), tables.b_in)
    if family == "misfit":
        clusters = misfitted(clusters, scale, rng)
    return tables, clusters, scale


def check(family: str, seed: int, checkpoints: list[Path] | None = None, ps: tuple[int, ...] = SYNTHETIC_PS,
          parity_neurons: bool = False) -> dict:
    """Every tier on one model of ``family`` drawn from ``seed``: its violations, certified fraction and B/truth."""
    rng = np.random.default_rng(seed)
    tables, clusters, scale = model(family, rng, checkpoints, ps, parity_neurons)
    parity = fit_parity(fit_neurons(tables), tables.b_in)  # the explanation's parity term (an even p), as fitted
    report = bound_tables(tables, clusters, device="cpu", parity=parity)
    row = {"family": family, "seed": seed, "p": tables.p, "d_mlp": tables.d_mlp, "clusters": len(clusters),
           "scale": scale, "accuracy": float((report.model_margin > 0).mean()), "tiers": {}}
    for tier in report.tiers:
        summary = report.tier_summary(tier)  # bound.json's row: violations are inputs where B < brute force
        row["tiers"][tier.name] = {
            "bound_violations": summary["violations"],
            "margin_violations": int((tier.proven_margin > report.model_margin).sum()),
            **{key: summary[key] for key in ("certified_fraction", "tightness_median", "tightness_max")}}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0, help="first seed; model i uses seed + i")
    parser.add_argument("--json", type=Path, help="append this run, every model's row, to the runs logged here")
    parser.add_argument("--ps", type=int, nargs="+", default=list(SYNTHETIC_PS), help="p of the synthetic families")
    parser.add_argument("--trained", type=Path, nargs="+", help="checkpoints for the trained families (default: the "
                        "bundled model and benchmarks/models/pizza_p113_seed0.safetensors)")
    parser.add_argument("--parity-neurons", action="store_true", help="give the synthetic families' models at an even "
                        "p neurons that compute parity too")
    args = parser.parse_args()
    rows, start = [], time.perf_counter()
    families = FAMILIES if not args.trained else ("trained", "float32", "misfit")
    for i in range(args.models):
        family = families[i % len(families)]
        row = check(family, args.seed + i, args.trained, tuple(args.ps), args.parity_neurons)
        rows.append(row)
        violated = sum(t["bound_violations"] + t["margin_violations"] for t in row["tiers"].values())
        print(f"{i + 1}/{args.models} {family} seed {row['seed']} p={row['p']} d_mlp={row['d_mlp']} "
              f"scale {row['scale']}: accuracy {row['accuracy']:.3f}, violations {violated}, certified "
              + ", ".join(f"{name} {t['certified_fraction']:.3f}" for name, t in row["tiers"].items()), flush=True)
    violations = sum(t["bound_violations"] + t["margin_violations"] for r in rows for t in r["tiers"].values())
    print(f"\n{len(rows)} models in {time.perf_counter() - start:.0f} s; violations over every tier and input: "
          f"{violations}")
    for name in rows[0]["tiers"]:
        cert = [r["tiers"][name]["certified_fraction"] for r in rows]
        tight = [r["tiers"][name]["tightness_max"] for r in rows]
        print(f"  {name}: certified median {np.median(cert):.3f} (min {min(cert):.3f}); "
              f"B/truth max per model median {np.median(tight):.2f} (largest {max(tight):.2f})")
    if args.json:
        append_run(args.json, violations=violations, models=rows)


if __name__ == "__main__":
    main()
