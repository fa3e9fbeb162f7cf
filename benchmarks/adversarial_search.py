"""An adversary for the bounds: hill-climbing on the model itself towards an input where a tier fails.

    python benchmarks/adversarial_search.py                          # every tier, 2 starts each, 200 steps
    python benchmarks/adversarial_search.py --tiers arcs --starts 8 --steps 1000 --json out.json
    python benchmarks/adversarial_search.py --ps 59 83 --bundled-share 0 --refit   # larger, refitted each step

The hypothesis tests and soundness_at_scale.py sample models: random, perturbed, kinked, float32, misfitted. This
climbs instead. Each start is a model (a noisy synthetic pizza, at p = 11 to 29 unless --ps says otherwise, or the
bundled model, or those given with --trained, perturbed; with --parity-neurons a synthetic start at an even p also has
1 to p neurons that compute parity) and its explanation, the parity term fitted to the model as it stands at every
step (an even p); each step proposes one change and
keeps it when the tier comes no further from failing. A tier's closeness to failing is measured two ways, each the
largest over the inputs: "bound", truth/B, and "margin", 1 + (proven model margin − true model margin)/(B + |true
model margin|). Each is at most 1 while the tier is sound and above 1 on an input where its bound is below brute
force's error or its proven margin above the model's; the starts take turns climbing one or the other, and every
model evaluated is checked in both. The changes:
  nudge      Gaussian noise on a few neurons (their columns of F_a and F_b, b_in, their row of W_L), at a scale
             that grows after a kept step and shrinks after a rejected one, in units of each table's spread at
             the start (so that the model cannot grow without limit)
  focus      the same on the rows a and b of the input nearest to failing
  kink       a neuron's pre-activation put exactly at relu's kink on that input
  direct     noise on that input's direct path (it moves the margins, not the error)
  float32    every table rounded to float32
  misfit     the explanation's phases, amplitudes, offsets and harmonics perturbed (with --refit, the explanation
             is fitted again after every step instead, as ``quadlens bound`` does)
A start that passes 1 is a counterexample: its tables are written beside the JSON (``--json``) to debug.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from runlog import append_run

import quadlens
from quadlens.certify import TIERS, brute_force, check_tiers, load_compiled_kernels, run_tier
from quadlens.clusters import build_clusters
from quadlens.neurons import fit_neurons
from quadlens.parity import fit_parity
from quadlens.synthetic import misfitted, pizza_spec, pizza_tables, separating_frequencies, with_random_parity_neurons
from quadlens.tables import SeparableTables

MOVES = ("nudge", "focus", "kink", "direct", "float32", "misfit")
TABLES = ("F_a", "F_b", "b_in", "W_L", "D_a", "D_b")
SMALL_PS = (11, 13, 17, 19, 23, 29)
QUANTITIES = ("bound", "margin")  # what a climb pushes towards failing: truth/B, or the proven margin's excess


def start_model(rng: np.random.Generator, trained_share: float, ps: tuple[int, ...] = SMALL_PS,
                trained: list[Path] | None = None, parity_neurons: bool = False) -> tuple[str, SeparableTables]:
    """A trained model perturbed a little (the bundled one, or one of ``trained``), or a noisy synthetic pizza at
    one of ``ps`` (with ``parity_neurons``, at an even p, with 1 to p neurons that compute parity too)."""
    if rng.random() < trained_share:
        path = trained[int(rng.integers(len(trained)))] if trained else None
        tables = quadlens.separable_tables(quadlens.load_model(path))
        return "bundled" if path is None else path.stem, _nudged(tables, np.arange(tables.d_mlp), 0.01,
                                                                  spreads(tables), rng)
    p = int(rng.choice(ps))
    spec = pizza_spec(p, separating_frequencies(p, count=int(rng.integers(1, 4)), seed=int(rng.integers(1 << 30))),
                      neurons_per_cluster=int(rng.integers(4, 2 * p)), beta=float(rng.uniform(-0.3, 0.3)),
                      kappa=float(rng.uniform(-0.3, 0.6)), seed=int(rng.integers(1 << 30)))
    tables = pizza_tables(spec, noise=float(rng.uniform(0, 0.2)), output_noise=float(rng.uniform(0, 0.1)),
                          seed=int(rng.integers(1 << 30)))
    return "synthetic", with_random_parity_neurons(tables, rng) if parity_neurons else tables


def spreads(tables: SeparableTables) -> dict[str, float]:
    """Each table's standard deviation (the direct path's: 1 logit where it is 0), the unit of every change: fixed
    at the start, so that a climb cannot grow the model without limit (its slack would grow with it)."""
    out = {name: float(getattr(tables, name).std()) for name in TABLES}
    return {name: value if value > 0 else 1.0 for name, value in out.items()}


def _nudged(tables: SeparableTables, neurons: np.ndarray, scale: float, spread: dict[str, float],
            rng: np.random.Generator, at: tuple[int, int] | None = None) -> SeparableTables:
    """Gaussian noise of ``scale`` times each table's ``spread`` on the neurons' entries: every one of them, or
    with ``at`` = (a, b) only row a of F_a and row b of F_b."""
    F_a, F_b, b_in, W_L = (getattr(tables, name).copy() for name in ("F_a", "F_b", "b_in", "W_L"))
    every = np.arange(tables.p)
    for name, table, rows in (("F_a", F_a, every if at is None else [at[0]]),
                              ("F_b", F_b, every if at is None else [at[1]])):
        table[np.ix_(rows, neurons)] += scale * spread[name] * rng.normal(size=(len(rows), len(neurons)))
    if at is None:
        b_in[neurons] += scale * spread["b_in"] * rng.normal(size=len(neurons))
        W_L[neurons] += scale * spread["W_L"] * rng.normal(size=(len(neurons), tables.p))
    return dataclasses.replace(tables, F_a=F_a, F_b=F_b, b_in=b_in, W_L=W_L)


def closeness(tables: SeparableTables, clusters: list, tier: str) -> dict[str, tuple[float, tuple[int, int]]]:
    """Per quantity, how near the tier is to failing on its nearest input (at most 1: sound there; above 1:
    failing), and that input (a, b). An input where the truth is 0, or the proven margin is the model's own, is
    not near. The explanation is ``clusters`` and the parity term fitted to the tables (an even p)."""
    parity = fit_parity(fit_neurons(tables), tables.b_in)
    truth, model_margin, _, _ = brute_force(tables, clusters, device="cpu", parity=parity)
    result = run_tier(tier, tables, clusters, parity)
    B, proven = result.bound, result.proven_margin
    scale = np.maximum(B + np.abs(model_margin), np.finfo(float).tiny)
    near = {"bound": np.where(truth == 0, 0.0, truth / np.maximum(B, np.finfo(float).tiny)),
            "margin": np.where(proven == model_margin, 0.0, 1 + (proven - model_margin) / scale)}
    out = {}
    for quantity, values in near.items():
        a, b = np.unravel_index(int(np.argmax(values)), values.shape)
        out[quantity] = (float(values[a, b]), (int(a), int(b)))
    return out


def propose(move: str, tables: SeparableTables, clusters: list, at: tuple[int, int], scale: float,
            spread: dict[str, float], rng: np.random.Generator) -> tuple[SeparableTables, list]:
    """One change of kind ``move`` to the model (or, for ``misfit``, to its explanation), of ``scale`` times the
    ``spread`` of the tables it changes."""
    a, b = at
    if move == "nudge":
        neurons = rng.choice(tables.d_mlp, size=min(int(rng.integers(1, 5)), tables.d_mlp), replace=False)
        return _nudged(tables, neurons, scale, spread, rng), clusters
    if move == "focus":
        neurons = rng.choice(tables.d_mlp, size=min(int(rng.integers(1, 9)), tables.d_mlp), replace=False)
        return _nudged(tables, neurons, scale, spread, rng, at), clusters
    if move == "kink":
        pre = tables.F_a[a] + tables.F_b[b] + tables.b_in
        near = np.argsort(np.abs(pre))[:8]  # those nearest the kink already: the likeliest to change sign nearby
        i = int(rng.choice(near[pre[near] != 0])) if (pre[near] != 0).any() else int(rng.integers(tables.d_mlp))
        b_in = tables.b_in.copy()
        b_in[i] = -(tables.F_a[a, i] + tables.F_b[b, i])
        return dataclasses.replace(tables, b_in=b_in), clusters
    if move == "direct":
        D_a, D_b = tables.D_a.copy(), tables.D_b.copy()
        D_a[a] += scale * spread["D_a"] * rng.normal(size=tables.p)
        D_b[b] += scale * spread["D_b"] * rng.normal(size=tables.p)
        return dataclasses.replace(tables, D_a=D_a, D_b=D_b), clusters
    if move == "float32":
        return dataclasses.replace(tables, **{name: getattr(tables, name).astype(np.float32).astype(np.float64)
                                              for name in TABLES}), clusters
    return tables, misfitted(clusters, 0.1 * scale, rng)


def fitted(tables: SeparableTables) -> list:
    """The explanation ``quadlens bound`` fits to the tables: its clusters."""
    return build_clusters(fit_neurons(tables), tables.b_in)


def climb(tier: str, target: str, seed: int, steps: int, refit: bool, trained_share: float,
          out: Path | None, ps: tuple[int, ...] = SMALL_PS, trained: list[Path] | None = None,
          parity_neurons: bool = False) -> dict:
    """One start's climb towards failing in ``target`` (one of QUANTITIES); its row of the results, with the
    nearest to failing that every model it evaluated, kept or not, came in either quantity."""
    rng = np.random.default_rng(seed)
    family, tables = start_model(rng, trained_share, ps, trained, parity_neurons)
    clusters = fitted(tables)
    if not clusters:
        return {"tier": tier, "seed": seed, "family": family, "p": tables.p, "skipped": "no cluster fitted"}
    moves = [m for m in MOVES if not (refit and m == "misfit")]
    start = time.perf_counter()
    near, spread = closeness(tables, clusters, tier), spreads(tables)
    first, nearest = near[target][0], {q: value for q, (value, _) in near.items()}
    scale, kept, failing = 0.05, {m: 0 for m in moves}, None
    for _ in range(steps):
        move = str(rng.choice(moves))
        new_tables, new_clusters = propose(move, tables, clusters, near[target][1], scale, spread, rng)
        if refit:
            new_clusters = fitted(new_tables)
            if not new_clusters:
                continue
        new = closeness(new_tables, new_clusters, tier)
        nearest = {q: max(nearest[q], value) for q, (value, _) in new.items()}
        if max(value for value, _ in new.values()) > 1:
            failing = new_tables
            break
        if new[target][0] >= near[target][0]:
            tables, clusters, near = new_tables, new_clusters, new
            kept[move] += 1
            scale = min(scale * 1.5, 1.0)
        else:
            scale = max(scale * 0.9, 1e-4)
    row = {"tier": tier, "target": target, "seed": seed, "family": family, "p": tables.p, "d_mlp": tables.d_mlp,
           "clusters": len(clusters), "refit": refit, "steps": steps, "start": first, "reached": near[target][0],
           "nearest": nearest, "failed": failing is not None, "kept": kept, "seconds": time.perf_counter() - start}
    if failing is not None and out is not None:
        path = out.with_name(f"{out.stem}_counterexample_{tier}_{seed}.npz")
        np.savez(path, **{name: getattr(failing, name) for name in TABLES})
        row["counterexample"] = path.name
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiers", nargs="+", default=list(TIERS))
    parser.add_argument("--starts", type=int, default=2, help="starts per tier")
    parser.add_argument("--steps", type=int, default=200, help="proposed changes per start")
    parser.add_argument("--seed", type=int, default=0, help="first seed; start i of a tier uses seed + i")
    parser.add_argument("--refit", action="store_true", help="fit the explanation again after every change")
    parser.add_argument("--bundled-share", "--trained-share", dest="trained_share", type=float, default=0.25,
                        help="share of the starts from a trained model (the bundled one, p = 59, unless --trained), "
                             "the rest synthetic")
    parser.add_argument("--trained", type=Path, nargs="+", help="checkpoints to start from instead of the bundled one")
    parser.add_argument("--ps", type=int, nargs="+", default=list(SMALL_PS), help="p of the synthetic starts")
    parser.add_argument("--parity-neurons", action="store_true",
                        help="give the synthetic starts at an even p neurons that compute parity too")
    parser.add_argument("--json", type=Path, help="append this run to the runs logged here")
    args = parser.parse_args()
    load_compiled_kernels()
    rows, begun = [], time.perf_counter()
    for tier in check_tiers(args.tiers):
        for i in range(args.starts):
            target = QUANTITIES[i % len(QUANTITIES)]
            row = climb(tier, target, args.seed + i, args.steps, args.refit, args.trained_share, args.json,
                        tuple(args.ps), args.trained, args.parity_neurons)
            rows.append(row)
            if "skipped" in row:
                print(f"{tier} seed {row['seed']}: skipped, {row['skipped']}", flush=True)
                continue
            print(f"{tier} seed {row['seed']} {row['family']} p={row['p']} d_mlp={row['d_mlp']}, towards the "
                  f"{target}: 1 - closeness {1 - row['start']:.3g} -> {1 - row['reached']:.3g}"
                  f"{' FAILED' if row['failed'] else ''} in {row['seconds']:.0f} s, kept {row['kept']}", flush=True)
    climbed = [r for r in rows if "skipped" not in r]
    failures = sum(r["failed"] for r in climbed)
    print(f"\n{len(climbed)} climbs, {sum(r['steps'] for r in climbed)} steps, {time.perf_counter() - begun:.0f} s; "
          f"models past 1 (a tier failing): {failures}")
    for tier in dict.fromkeys(r["tier"] for r in climbed):
        ours = [r for r in climbed if r["tier"] == tier]
        print(f"  {tier}: 1 - closeness at the nearest to failing, " + ", ".join(
            f"{q} {1 - max(r['nearest'][q] for r in ours):.3g} (median over starts "
            f"{1 - np.median([r['nearest'][q] for r in ours]):.3g})" for q in QUANTITIES))
    if args.json:
        append_run(args.json, failures=failures, climbs=rows)


if __name__ == "__main__":
    main()
