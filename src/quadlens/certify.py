"""``quadlens bound``: brute force (the truth), then every tier's bound and certificate against it: certified
fractions, tightness, cost. Without brute force (large p, where it takes hours) the tiers' certified fractions
still stand: each is a proven lower bound on the model's accuracy."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from . import __version__
from .bounds import ErrorTerms, least_gain, linear_error, quadratic_error
from .clusters import Cluster, build_clusters
from .competitors import COMPETITORS, nearest_competitors
from .devices import resolve_device
from .files import atomic_write_bytes, json_ready
from .ladder import integral_table, targets
from .lens import by_difference_and_step
from .model import Transformer
from .neurons import fit_neurons
from .ops import Ops
from .parity import Parity, fit_parity
from .partial import Partial, fingerprint
from .tables import SeparableTables, row_chunks, separable_tables
from .text import duration, percent

SCHEMA = "quadlens.bound"
BRUTE_FORCE = "brute_force"  # the stage name of brute force's rows among a run's partial results
WAVEFORM_GROUPS = 4  # arcs_grouped: each cluster split by neuron offset, each group with its own waveform
EXACT_DIFFERENCES = (16, 128)  # arcs_grouped: differences a − b per group evaluated exactly (its blind spots), p // 4
# within these bounds: the blind spots' share of the differences does not shrink with p, and the cap keeps it linear
EXACT_MAXIMA = 48  # arcs_grouped: its maximum over c taken exactly on this many times p inputs, the loosest
EXACT_INPUTS = (16, 32)  # arcs_grouped: exact hidden activations on E·p inputs, where the rest weighs most, E = p // 8
# within these bounds: at most an eighth of the inputs beyond the floor, and the cap keeps it linear
EXACT_LOOSE = 16  # arcs_grouped: the neurons outside every cluster evaluated on every input if at most this · d_mlp / p
# of them; what room that leaves goes to the worst-fitting cluster neurons (decomposition.MISFIT_REACH)
SCHEMA_VERSION = 16  # 2: certified by the competitor certificate, arcs_refined dropped; 3: arcs_grouped's exact maxima;
# 4: arcs_grouped's exact inputs; 5: up to 64 exact differences per group (was 32); 6: the neurons outside every
# cluster split on the tracked basis (quadratic tiers, exact inputs) and evaluated exactly in arcs_grouped; 7: with
# them, within the same budget, the cluster neurons whose residuals reach furthest past MISFIT_REACH, and the loose
# neurons' remainder bounded by Cauchy–Schwarz too; 8: exact inputs on (p // 8 within 16…32)·p inputs (was 16·p);
# 9: the remainder also bounded by the ideal waveform's harmonics (every tier but lipschitz); 10: that expansion's
# tail bounded to second order between grid points, on 256 points (was to first order, on 1024); 11: each band
# neuron's correction taken along the chord (1 − |x|/τ), not at its full share, and one band narrowing, not two;
# 12: in the remainder's bound by harmonics, the waveform groups of one frequency add their harmonics before the
# modulus (arcs_grouped; the other tiers have one group per frequency and are unchanged); 13: the certificate takes
# the sign of the error's tracked difference: what the error adds to the margin, not only its size; 14:
# arcs_grouped's exact maxima over c on 48·p inputs (was 16·p), ranked with the differences where the largest tracked
# phasors peak or dip as well as at the listed outputs; 15: arcs_grouped's exact differences up to 128 per group
# (was 64), shared among the groups by min-max where that cap binds, added to the arc sums as corrections (the same
# bounds below p = 260, to rounding); 16: the explanation keeps the parity neurons (an even p) as its parity term
EXPLANATION = ("L3: each cluster's integral (W_k/2)·C(κ_k, β_k, δ)·cos(Δ − ψ0_k) with its second harmonic, "
               "the parity term P((a + b) mod 2)·(−1)^c where neurons compute parity (an even p), "
               "plus the exact direct path")
CERTIFICATE = (f"an input is certified when a lower bound on the model's margin is positive: the explanation's "
               f"margin M plus the least the error can add to it (the tracked part's value at a+b less its largest "
               f"size and the rest, never below −B), or, where that is not positive but can become so, the "
               f"explanation's exact margin to each of the {COMPETITORS} outputs nearest to winning plus the error's "
               f"exact tracked difference there less the rest, every other output at the lower bound on its margin "
               f"plus that least addition")


@dataclass
class Tier:
    """One tier's per-input bound, explanation margin and proven model margin (``[p, p]``), its cost and time."""

    name: str
    cost: str
    bound: np.ndarray
    margin: np.ndarray  # the explanation's margin (or a lower bound on it)
    proven_margin: np.ndarray  # a lower bound on the model's margin: the input is certified where it is positive
    ops: int
    seconds: float

    @property
    def certified(self) -> np.ndarray:
        return self.proven_margin > 0

    def __repr__(self) -> str:
        return (f"Tier({self.name!r}, {self.cost}: {percent(self.certified.mean())} certified, max bound "
                f"{self.bound.max():.3g}, {self.ops:.3g} ops, {self.seconds:.3g} s)")


def brute_force(tables: SeparableTables, clusters: list[Cluster], device: str | None = None,
                chunk_elements: int = 1 << 25, rows: int | None = None, partial: Partial | None = None,
                save_every: float = 60.0, on_rows: Callable[[int, int], None] | None = None,
                parity: Parity | None = None) -> tuple[np.ndarray, np.ndarray, int, float]:
    """True max_c |err(a,b,a+b) − err(a,b,c)| and the model's margin, ``[p, p]`` each, float64.

    Evaluates the model on every input and output (O(p³·d_mlp)), on CUDA when available; with ``rows``, on the
    first ``rows`` rows a alone (``[rows, p]`` each: a sample to time, where the whole would take hours).
    With ``partial``, the rows done are saved there at least every ``save_every`` seconds and once all are done,
    and a later call for the same inputs takes them up: an interrupted run resumes, its seconds summed over the
    runs. ``on_rows(done, total)`` hears the progress: once before the first row (``done`` > 0 when resumed),
    then after each chunk of rows. The explanation is the clusters' integrals and, where given, the parity term.
    Returns (truth, model_margin, ops, seconds).
    """
    start = time.perf_counter()
    dev = resolve_device(device)
    p, m = tables.p, tables.d_mlp
    as_t = lambda x: torch.as_tensor(x, dtype=torch.float64, device=dev)  # noqa: E731
    F_a, F_b, b_in, W_L = as_t(tables.F_a), as_t(tables.F_b), as_t(tables.b_in), as_t(tables.W_L)
    D_a, D_b = as_t(tables.D_a), as_t(tables.D_b)
    explanation = as_t(integral_table(tables, clusters, harmonics=True, parity=parity))  # the direct paths cancel
    t = torch.arange(p, device=dev)
    y = torch.tensor(targets(p), device=dev)  # a copy: targets' table is read-only
    count = p if rows is None else min(max(rows, 0), p)
    truth = torch.empty(count, p, dtype=torch.float64, device=dev)
    model_margin = torch.empty_like(truth)
    done, earlier = _resume_rows(partial, truth, model_margin)
    progress = on_rows or (lambda done, total: None)
    progress(done, count)
    saved_at = time.perf_counter()
    for chunk in row_chunks(count, p * max(m, p), chunk_elements, first=done):
        mlp = torch.relu(F_a[chunk, None, :] + F_b[None, :, :] + b_in) @ W_L
        err = mlp - by_difference_and_step(explanation, t, chunk)
        target = y[chunk, :, None]
        truth[chunk] = (err.gather(-1, target) - err).abs().amax(-1)
        logits = mlp + D_a[chunk, None, :] + D_b[None, :, :]
        correct = logits.gather(-1, target)
        model_margin[chunk] = (correct - logits.scatter(-1, target, -torch.inf)).amin(-1)
        if partial is not None and (chunk.stop == count or time.perf_counter() - saved_at >= save_every):
            partial.save(BRUTE_FORCE, {"truth": truth[:chunk.stop].cpu().numpy(),
                                       "model_margin": model_margin[:chunk.stop].cpu().numpy(),
                                       "seconds": np.array(earlier + time.perf_counter() - start)})
            saved_at = time.perf_counter()
        progress(chunk.stop, count)
    # the hidden layer and its readout; per output: the explanation's index (3), its subtraction, the difference
    # to the correct output, its size and maximum, the direct path (2) and the margin's difference and minimum
    ops = count * p * (2 * m * p + 4 * m + 11 * p)
    return truth.cpu().numpy(), model_margin.cpu().numpy(), ops, earlier + time.perf_counter() - start


def _resume_rows(partial: Partial | None, truth: torch.Tensor, model_margin: torch.Tensor) -> tuple[int, float]:
    """Fill the first rows of ``truth`` and ``model_margin`` from the partial results saved for these inputs, if
    any fit: how many rows, and the seconds spent on them."""
    saved = partial.load(BRUTE_FORCE) if partial is not None else None
    if saved is None or saved["truth"].ndim != 2 or saved["truth"].shape[1] != truth.shape[1] \
            or len(saved["truth"]) > len(truth):
        return 0, 0.0
    done = len(saved["truth"])
    truth[:done] = torch.as_tensor(saved["truth"], device=truth.device)
    model_margin[:done] = torch.as_tensor(saved["model_margin"], device=truth.device)
    return done, float(saved["seconds"])


@dataclass
class BoundReport:
    """Tiers, brute-force truth and model margin, all per input ``[p, p]``; the brute-force fields are None when
    it was not run (``has_truth``)."""

    p: int
    d_mlp: int
    tiers: list[Tier]
    truth: np.ndarray | None
    model_margin: np.ndarray | None
    brute_force_ops: int | None
    brute_force_seconds: float | None
    clusters: list[Cluster] = field(default_factory=list)
    parity: Parity | None = None
    model: dict = field(default_factory=dict)  # ``Transformer.identity``: which model was bounded (by ``bound``)

    @property
    def has_truth(self) -> bool:
        return self.truth is not None

    def tier(self, name: str) -> Tier:
        """The tier of this name; a KeyError lists the tiers the report holds (``--tiers`` may have left it out)."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(f"no tier {name!r} in this report; it holds {[t.name for t in self.tiers]}")

    def violations(self, tier: Tier) -> int | None:
        """Inputs where the tier's bound is below the brute-force error (0 for a sound bound; None without it)."""
        return int((tier.bound < self.truth).sum()) if self.has_truth else None

    def __repr__(self) -> str:
        """One line for notebooks and logs: each tier's certified fraction and B/truth maximum (the arrays are the
        fields, the summary :meth:`to_dict`)."""
        tiers = ", ".join(f"{t.name}: {percent(t.certified.mean())} certified" + (
            f", B/truth max {(t.bound / np.maximum(self.truth, 1e-12)).max():.3g}" if self.has_truth else "")
            for t in self.tiers)
        truth = (f"accuracy={percent((self.model_margin > 0).mean(), 2)}, max error {self.truth.max():.3g}"
                 if self.has_truth else "no brute force")
        return f"BoundReport(p={self.p}, d_mlp={self.d_mlp}, {truth}; {tiers})"

    def _repr_html_(self) -> str:
        """What a notebook shows: the tiers' table of ``quadlens report``."""
        from .report import bounds_html

        return bounds_html(self)

    def tier_summary(self, tier: Tier) -> dict:
        """The tier's figures for ``bound.json``; those against brute force are None where it was not run."""
        summary = {"name": tier.name, "cost": tier.cost, "ops": tier.ops, "seconds": tier.seconds,
                   "certified_fraction": float(tier.certified.mean()), "max_bound": float(tier.bound.max()),
                   "min_proven_margin": float(tier.proven_margin.min()), "tightness_max": None,
                   "tightness_median": None, "violations": None, "speedup_vs_brute_force": None,
                   "ops_ratio_vs_brute_force": None}
        if self.has_truth:
            erring = self.truth > 0  # B/truth is undefined where the model and the explanation agree exactly
            ratio = tier.bound[erring] / self.truth[erring]
            summary.update(tightness_max=float(ratio.max()) if ratio.size else None,
                           tightness_median=float(np.median(ratio)) if ratio.size else None,
                           violations=self.violations(tier),
                           speedup_vs_brute_force=self.brute_force_seconds / max(tier.seconds, 1e-12),
                           ops_ratio_vs_brute_force=self.brute_force_ops / max(tier.ops, 1))
        return summary

    def to_dict(self) -> dict:
        brute = None if not self.has_truth else {
            "ops": self.brute_force_ops, "seconds": self.brute_force_seconds, "max_error": float(self.truth.max()),
            "median_error": float(np.median(self.truth)), "accuracy": float((self.model_margin > 0).mean()),
            "min_model_margin": float(self.model_margin.min())}
        return json_ready({
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "quadlens_version": __version__,
            "explanation": EXPLANATION, "certificate": CERTIFICATE, "competitors": COMPETITORS,
            "model": self.model or None, "p": self.p, "d_mlp": self.d_mlp,
            "clusters": [c.frequency for c in self.clusters],
            "parity_neurons": 0 if self.parity is None else len(self.parity.neurons),
            "tiers": [self.tier_summary(t) for t in self.tiers],
            "brute_force": brute,
        })

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-input arrays for ``bound.npz``: truth and model margin (with brute force), and each tier's bound,
        margins and verdict."""
        out = {"true_error": self.truth, "model_margin": self.model_margin} if self.has_truth else {}
        for tier in self.tiers:
            out[f"bound_{tier.name}"] = tier.bound
            out[f"margin_{tier.name}"] = tier.margin
            out[f"proven_margin_{tier.name}"] = tier.proven_margin
            out[f"certified_{tier.name}"] = tier.certified
        return out

    def save(self, out_dir: Path) -> None:
        """Write ``bound.json`` and ``bound.npz`` atomically."""
        import io
        import json

        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / "bound.json",
                           (json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n").encode())
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **self.arrays())
        atomic_write_bytes(out_dir / "bound.npz", buffer.getvalue())


def _tier(name: str, cost: str, tables: SeparableTables, clusters: list[Cluster], parity: Parity | None, error_fn,
          exact_over_c: bool = False, exact: bool = False, exact_maxima: int = 0) -> Tier:
    """Run a tier and its certificate, counting operations: the explanation's margin (linear-time lower bound, or
    ``exact``), the error's terms, the bound B, and the proven model margin: M plus the least the error can add
    to the margin over any output (at least −B), raised by the nearest competitors' check on the inputs where
    that can change the verdict. ``exact_maxima``·p inputs get the exact maximum over c (``ErrorTerms.refine``)."""
    ops = Ops()
    start = time.perf_counter()
    competitors = nearest_competitors(tables, clusters, ops, parity=parity)
    error: ErrorTerms = error_fn(ops)
    bound, floor = error.bound_and_floor(ops, exact_over_c)
    bound = error.refine(bound, competitors.steps, exact_maxima * tables.p, ops)
    gain = least_gain(floor, bound)  # err(a+b) − err(c) ≥ this for every c; never below −B
    ops(bound.size)
    margin = competitors.exact_margin(ops) if exact else competitors.lower_bound()
    proven = margin + gain
    # checking the competitors can only change the verdict where the margin is not proven yet and every unlisted
    # output is beaten
    undecided = np.nonzero((proven <= 0) & (competitors.others + gain > 0))
    gains = error.gains(competitors.steps, ops, undecided)
    checked = competitors.proven_model_margin(gains, gain, undecided)
    proven[undecided] = np.maximum(proven[undecided], checked)
    ops(4 * bound.size + 3 * gains.size)
    return Tier(name, cost, bound, margin, proven, ops.count, time.perf_counter() - start)


def _within(count: int, bounds: tuple[int, int]) -> int:
    low, high = bounds
    return min(max(count, low), high)


def exact_differences(p: int) -> int:
    """How many differences a − b per cluster group ``arcs_grouped`` evaluates exactly: p // 4, at least 16 (so that
    at p = 59 most differences are still bounded) and at most 128 (so that the tier stays linear)."""
    return _within(p // 4, EXACT_DIFFERENCES)


def shares_differences(p: int) -> bool:
    """Whether ``arcs_grouped`` shares its exact differences among the cluster groups (``bounds._min_max_pairs``):
    where the cap binds, so that each group's quarter of the differences is more than its share of the budget."""
    return p // 4 > EXACT_DIFFERENCES[1]


def exact_inputs(p: int) -> int:
    """On how many times p inputs ``arcs_grouped`` takes the exact hidden activations: p // 8, at least 16 (27 % of
    the inputs at p = 59) and at most 32 (so that the tier stays linear; the share then falls as 32/p)."""
    return _within(p // 8, EXACT_INPUTS)


# name: (cost, the error's terms, their options (a callable is given p), the tier's options); cheapest first
_TIER_SPECS = {
    "lipschitz": ("O(p·d_mlp)", linear_error, {"sign_patterns": False}, {}),
    "arcs": ("O(p·d_mlp)", linear_error, {"sign_patterns": True}, {}),
    "arcs_grouped": ("O(p·d_mlp)", linear_error,
                     {"sign_patterns": True, "waveform_groups": WAVEFORM_GROUPS, "exact_differences": exact_differences,
                      "share_differences": shares_differences, "exact_inputs": exact_inputs,
                      "exact_loose": EXACT_LOOSE},
                     {"exact_maxima": EXACT_MAXIMA}),
    "quadratic": ("O(p²·d_mlp)", quadratic_error, {}, {"exact": True}),
    "quadratic_exact_c": ("O(p²·d_mlp + p³·F)", quadratic_error, {}, {"exact_over_c": True, "exact": True}),
}
TIERS = tuple(_TIER_SPECS)


def explanation_terms(tables: SeparableTables) -> tuple[list[Cluster], Parity | None]:
    """The explanation that ``explain`` finds and the bounds bound (L3): its clusters and its parity term (None
    where no neuron computes parity)."""
    fits = fit_neurons(tables)
    return build_clusters(fits, tables.b_in), fit_parity(fits, tables.b_in)


def check_tiers(tiers: str | Sequence[str]) -> list[str]:
    """The chosen tier names (a list, or one string of names separated by commas), cheapest first; a ValueError
    names any unknown one."""
    if isinstance(tiers, str):
        tiers = [name.strip() for name in tiers.split(",") if name.strip()]
    unknown = [name for name in tiers if name not in TIERS]
    if unknown:
        raise ValueError(f"unknown bound tier {', '.join(map(repr, unknown))}; the tiers are {', '.join(TIERS)}")
    if not tiers:
        raise ValueError(f"no bound tier chosen; the tiers are {', '.join(TIERS)}")
    return [name for name in TIERS if name in tiers]


def run_tier(name: str, tables: SeparableTables, clusters: list[Cluster], parity: Parity | None = None,
             **overrides) -> Tier:
    """One tier by name (docs/bounds.md has each one's argument), without brute force: its bound, margins and
    verdicts per input, against the clusters' integrals and, where given, the parity term; ``overrides`` replace
    options of its error terms (for ablations, e.g. ``exact_differences`` of ``linear_error``). numpy's BLAS runs on
    one thread meanwhile: its threads spin for a while after each call and take the cores from the compiled kernels
    that follow, and the tiers' matrix products are small (docs/bounds-record.md, Speed)."""
    check_tiers([name])
    cost, error_terms, options, tier_options = _TIER_SPECS[name]
    options = {key: value(tables.p) if callable(value) else value for key, value in options.items()} | overrides
    with threadpool_limits(1, user_api="blas"):
        return _tier(name, cost, tables, clusters, parity,
                     lambda ops: error_terms(tables, clusters, ops=ops, parity=parity, **options), **tier_options)


@cache
def load_compiled_kernels() -> None:
    """Run every tier once on a tiny synthetic pizza, so that loading the compiled kernels from numba's cache
    (the arc sums, the certificate's margins and differences, the peak bound: about 0.1 s each, once per
    process) is not timed as part of the first tier that calls them."""
    from .synthetic import pizza_spec, pizza_tables

    tables = pizza_tables(pizza_spec(11, (1, 3), neurons_per_cluster=8))
    for name in TIERS:
        run_tier(name, tables, *explanation_terms(tables))


def bound_tables(tables: SeparableTables, clusters: list[Cluster], device: str | None = None,
                 tiers: str | Sequence[str] = TIERS, on_stage: Callable[[str], None] | None = None,
                 truth: bool = True, resume: Path | None = None, parity: Parity | None = None) -> BoundReport:
    """The chosen tiers (every one by default) on given tables against an explanation, its clusters and parity
    term (``explanation_terms``), with brute force for the truth unless ``truth`` is False; ``on_stage`` hears what
    runs (for a progress display): each stage's name as it starts, and brute force's rows as they finish. With
    ``resume``, a folder, brute force's rows and each finished tier are saved there as they come, and a later call
    for the same model, explanation and quadlens version takes them up (``quadlens.partial``); the caller removes the
    folder once it has the results."""
    if tables.act_fn != "relu":
        raise ValueError(f"bounds are derived for relu MLPs; this model uses {tables.act_fn!r}")
    names = check_tiers(tiers)
    stage = on_stage or (lambda name: None)
    partial = None if resume is None else Partial(resume, fingerprint(__version__, SCHEMA_VERSION, tables, clusters,
                                                                      parity))
    stage("compiled kernels")
    load_compiled_kernels()
    true_error, model_margin, bf_ops, bf_seconds = None, None, None, None
    if truth:
        true_error, model_margin, bf_ops, bf_seconds = brute_force(tables, clusters, device, partial=partial,
                                                                   on_rows=_rows_heard(stage), parity=parity)
    chosen = []
    for i, name in enumerate(names):
        stage(f"{name} ({i + 1}/{len(names)})")
        chosen.append(_resumed_tier(name, tables, clusters, parity, partial))
    return BoundReport(tables.p, tables.d_mlp, chosen, true_error, model_margin, bf_ops, bf_seconds, clusters, parity)


def _rows_heard(stage: Callable[[str], None]) -> Callable[[int, int], None]:
    """Brute force's progress as stages: its start ("brute force", or where it resumes), then the rows done and,
    at this run's pace, about how long is left."""
    start, first = time.perf_counter(), []

    def heard(done: int, total: int) -> None:
        if not first:
            first.append(done)
            stage(f"brute force: resuming at row {done} of {total}" if done else "brute force")
            return
        left = (total - done) * (time.perf_counter() - start) / max(done - first[0], 1)
        stage(f"brute force: {done} of {total} rows, about {duration(left)} left")

    return heard


def _resumed_tier(name: str, tables: SeparableTables, clusters: list[Cluster], parity: Parity | None,
                  partial: Partial | None) -> Tier:
    """``run_tier``, or the tier as a resumed run saved it; saved for a later one."""
    saved = partial.load(f"tier_{name}") if partial is not None else None
    if saved is not None:
        return Tier(name, _TIER_SPECS[name][0], saved["bound"], saved["margin"], saved["proven_margin"],
                    int(saved["ops"]), float(saved["seconds"]))
    tier = run_tier(name, tables, clusters, parity)
    if partial is not None:
        partial.save(f"tier_{name}", {"bound": tier.bound, "margin": tier.margin, "proven_margin": tier.proven_margin,
                                      "ops": np.array(tier.ops), "seconds": np.array(tier.seconds)})
    return tier


def bound(model: Transformer, device: str | None = None, tiers: str | Sequence[str] = TIERS,
          on_stage: Callable[[str], None] | None = None, truth: bool = True, resume: Path | None = None) -> BoundReport:
    """Bound ``model`` against its L3 explanation (clusters and parity term found as in ``explain``), with the
    chosen tiers and, unless ``truth`` is False, brute force; ``resume`` as in ``bound_tables``."""
    tables = separable_tables(model)
    clusters, parity = explanation_terms(tables)
    report = bound_tables(tables, clusters, device, tiers, on_stage, truth, resume, parity)
    report.model = model.identity()
    return report
