"""Sound bounds on how far the model strays from its quadrature explanation (THEORY §7, docs/bounds.md).

The explanation is L3, the integral: per cluster ``(W_k/2) C(κ_k, β_k, δ) cos(ωk(a+b−c) − ψ0_k)``, plus
the exact direct path. Each tier's error terms give, for every input, a bound B(a, b) ≥
max_c |err(a,b,a+b) − err(a,b,c)| with err = model − explanation, and the error's exact tracked difference
at any listed output, which the certificate (``quadlens.competitors``) checks against the explanation's margin.

Tiers (costs counted in arithmetic operations as they are performed):
  lipschitz     linear   the decomposition (``quadlens.decomposition``), every residual taken by relu's
                         Lipschitz constant
  arcs          linear   the same, with sign patterns: the signed residual enters exactly over the ideal
                         on-set; only bands around the kink, as wide as the largest residual share inside
                         them, are bounded, each neuron's flip by its share along the chord (1 − |x|/τ)
  arcs_grouped  linear   each cluster split by neuron offset into groups with their own waveform, each
                         group's worst differences a − b (its blind spots) evaluated exactly (where the
                         budget is short, shared among the groups where their summed band is largest), the exact
                         hidden activations on the 16·p to 32·p inputs where the rest weighs most, and
                         the maximum over c taken exactly on the 48·p inputs where B looks loosest
  quadratic     O(p²m)   exact hidden activations; only the maximum over c is bounded
  quadratic_exact_c      the same with the tracked part's maximum over c taken exactly (O(p³F) more)
  brute force   O(p³m)   the truth (``quadlens.certify``)

Every tier but ``lipschitz`` bounds the output remainder's part of the error three ways, neuron by neuron, by
Cauchy–Schwarz over the neurons, and by the ideal waveform's harmonics, and keeps the smallest per input
(docs/bounds.md §1).

The arc sums themselves run in ``quadlens.arcs`` (compiled).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from . import arcs
from .arcs import SAFETY
from .clusters import Cluster
from .decomposition import (DIRECTIONS, MISFIT_REACH, TRACKED_EXTRA, ClusterTerms, Decomposition, decompose,
                            output_basis, rotation)
from .ladder import difference_index, targets
from .ops import Ops
from .parity import Parity
from .tables import SeparableTables

# times the linear tiers narrow each band to the residuals of the neurons inside it (docs/bounds-record.md, The chord)
BAND_ITERATIONS = 1
HARMONICS = 16  # the ideal activation's waveform expanded to this harmonic of the phase for the remainder (docs §1)
WAVEFORM_GRID = 256  # points on the circle where that expansion's tail is measured (docs §1)
PEAK_PHASORS = 4  # the refinement's lower bound on the maximum over c also looks where these largest phasors peak (§3)


# ---------------------------------------------------------------- arcs: sums over neurons by phase

@dataclass
class ClusterSums:
    """One cluster's share of a bound per input: the summed output weights (``ClusterTerms.output_weights``,
    ``[W, p, p]``) of its activations as far as known, and the band term ``[p, p]`` bounding the rest."""

    found: np.ndarray
    band: np.ndarray


def _waveform_parts(phase: np.ndarray) -> np.ndarray:
    """(1, cos φ, sin φ, cos 2φ, sin 2φ) per neuron ``[n, 5]``: κ + Q(θ) for θ = u + φ is κ, 2A cos u, −2A sin u,
    2B cos 2u, −2B sin 2u times these."""
    return np.stack([np.ones_like(phase), np.cos(phase), np.sin(phase), np.cos(2 * phase), np.sin(2 * phase)], axis=1)


def _ideal_prefix(term: ClusterTerms, weights: np.ndarray) -> np.ndarray:
    """Prefix sums over the doubled phase list of r times the waveform's parts (``_waveform_parts``) times each
    output weight: ``[2n+1, 5, W]``."""
    parts = term.r[:, None] * _waveform_parts(term.phase)
    return arcs.prefix(parts[:, :, None] * weights[:, None, :])


def _sign_pattern_tables(term: ClusterTerms, p: int, workspace: arcs.Workspace) -> tuple[np.ndarray, ...]:
    """The arc kernel's tables for sign patterns: side a's residuals, the output weights, side b's residual prefix
    sums, the band's weights and side b's band prefix sums, side a's residual shares and side b's sparse tables
    of them, and each side's largest shares (``arcs.arc_sums`` documents each; it builds side a's tables row by
    row, taking relu(∓ε_a) again there rather than holding it)."""
    weights = term.output_weights
    n, W = weights.shape
    residual_prefix_b = arcs.row_prefix(term.eps_b, weights, workspace.array("residual b", (p, n + 1, W)))
    # a neuron turned off by its residual loses at most relu(−η) (span for the logits, twice the remainder's
    # span for |h'|); one turned on gains at most relu(η)
    cost = [term.span + 2 * term.remainder_span, term.span]
    parts = _waveform_parts(term.phase)  # x's parts, for the band's chord
    band_weights = np.stack([sign_cost[:, None] * parts for sign_cost in cost])
    band_prefix_b = workspace.array("band prefix b", (2, p, n + 1, 5))
    tables_b = workspace.array("share tables b", (2, arcs.table_levels(n), p, n), np.float32)
    shares_a, share_max = np.empty((2, p, n)), np.empty((2, 2, p))
    for s, sign in enumerate((-1, 1)):
        signed_a, signed_b = term.signed_residuals(sign)
        np.divide(signed_a, term.r, out=shares_a[s])
        arcs.row_prefix(signed_b, band_weights[s], band_prefix_b[s])
        share_b = np.divide(signed_b, term.r, out=signed_b)  # relu(∓ε_b) has been read: its shares take its place
        arcs.range_max_table(share_b, tables_b[s])
        share_max[s] = shares_a[s].max(1), share_b.max(1)
        del signed_a, signed_b, share_b  # before the next sign's are made: the tables' peak is the tier's
    return (term.eps_a, weights, residual_prefix_b, band_weights, band_prefix_b, shares_a, tables_b, share_max)


def _sign_pattern_sums(term: ClusterTerms, p: int, iterations: int, ops: Ops,
                       workspace: arcs.Workspace) -> ClusterSums:
    """Exact sums over the ideal on-set {κ + Q > 0} of ĥ_i plus the signed residual η_i; the band term covers
    the neurons whose sign the residual may flip, on each side of the kink (docs/bounds.md §3)."""
    n, W = term.output_weights.shape
    ops(p * n * (4 * W + 60 + 4 * np.log2(max(n, 2))) + n * 5 * W * 3 + 10 * n)
    found, band = workspace.array("found", (W, p, p)), np.empty((p, p))
    performed = arcs.arc_sums(*sign_pattern_arguments(term, p, workspace), iterations, found, band)
    ops(performed.sum())
    return ClusterSums(found, band)


def sign_pattern_arguments(term: ClusterTerms, p: int, workspace: arcs.Workspace) -> tuple:
    """``arcs.arc_sums``'s arguments for one cluster group, up to the band iterations and the outputs: its
    phases, waveform and frequency, the ideal prefix sums and the sign-pattern tables."""
    return (term.phase, term.kappa, term.beta, 2 * np.pi * term.frequency / p, _ideal_prefix(term, term.output_weights),
            *_sign_pattern_tables(term, p, workspace))


def _lipschitz_sums(term: ClusterTerms, p: int, ops: Ops, workspace: arcs.Workspace) -> ClusterSums:
    """Exact sums of the ideal activations ĥ; every neuron's residual taken by relu's Lipschitz constant."""
    weights = term.output_weights
    n, W = weights.shape
    found = workspace.array("found", (W, p, p))
    full_band = [np.abs(eps) @ term.span for eps in (term.eps_a, term.eps_b)]
    ops(n * 5 * W * 3 + 4 * p * n)
    performed = arcs.ideal_sums(term.phase, term.kappa, term.beta, 2 * np.pi * term.frequency / p,
                                _ideal_prefix(term, weights), found)
    ops(performed.sum() + p * p)
    return ClusterSums(found, full_band[0][:, None] + full_band[1][None, :])


def _band_by_difference(band: np.ndarray) -> np.ndarray:
    """A band term's sum over each difference a − b ``[p]``."""
    p = band.shape[0]
    return np.bincount(difference_index(p).ravel(), weights=band.ravel(), minlength=p)


def _min_max_pairs(by_difference: np.ndarray, pairs: int) -> np.ndarray:
    """``pairs`` (group, difference) pairs ``[G, p]``, taken one at a time at the difference whose band, summed over
    the groups not yet taken there, is largest, for its group with the largest band: a greedy for the smallest
    largest band. The worst inputs lie where two clusters' blind spots meet, and each group's own worst
    differences miss them (docs/bounds-record.md, *Exact inputs*)."""
    G, p = by_difference.shape
    order = np.argsort(-by_difference, axis=0)  # per difference, its groups by band, largest first
    remaining, taken = by_difference.sum(0), np.zeros(p, np.int64)
    chosen = np.zeros((G, p), bool)
    heap = [(-remaining[d], d) for d in range(p)]
    heapq.heapify(heap)
    for _ in range(min(pairs, G * p)):
        _, d = heapq.heappop(heap)
        group = order[taken[d], d]
        chosen[group, d] = True
        remaining[d] -= by_difference[group, d]
        taken[d] += 1
        if taken[d] < G:
            heapq.heappush(heap, (-remaining[d], d))
    return chosen


def _exact_differences(term: ClusterTerms, tables: SeparableTables, differences: np.ndarray, tracked: "_Tracked",
                       remainder: np.ndarray, band: np.ndarray, ops: Ops, chunk_elements: int = 1 << 20) -> None:
    """Make a group's sums exact on every input whose difference a − b is listed: add to them what the exact
    activations add to the arcs' (``arcs.flips``, times the output weights) and clear the group's band there.

    Each difference costs p·n: the group's blind spots, where the residuals decide every sign, are worth paying for.
    """
    p, n = tables.p, len(term.r)
    if not len(differences):
        return
    from_a = np.ascontiguousarray(tables.F_a[:, term.neurons] + tables.b_in[term.neurons])
    from_b = np.ascontiguousarray(tables.F_b[:, term.neurons])
    rows = np.tile(np.arange(p), len(differences))
    inputs = rows * p + (rows - np.repeat(differences, p)) % p
    step = max(1, chunk_elements // max(p * n, 1)) * p
    flipped = np.empty((min(step, len(inputs)), n))  # one buffer for every chunk (fresh memory costs page faults)
    omega_k = 2 * np.pi * term.frequency / p
    shift_tables = arcs.shift_tables(term.phase, term.kappa, term.beta, omega_k, p)  # once for every chunk
    for lo in range(0, len(inputs), step):
        a, b = np.divmod(inputs[lo:lo + step], p)
        arcs.flips(shift_tables, omega_k, from_a, from_b, a, b, flipped[:len(a)])
        change = (flipped[:len(a)] @ term.output_weights).T  # [W, n]
        tracked.add(term, change[:-1], (a, b))
        remainder[a, b] += change[-1]
        band[a, b] = 0.0
        ops(len(a) * (n * (4 + 2 * len(change)) + 60))


def linear_error(tables: SeparableTables, clusters: list[Cluster], sign_patterns: bool = True,
                 ops: Ops | None = None, tracked_extra: int = TRACKED_EXTRA, directions: int = DIRECTIONS,
                 band_iterations: int = BAND_ITERATIONS, exact_differences: int = 0, share_differences: bool = False,
                 waveform_groups: int = 1, exact_inputs: int = 0, exact_loose: int = 0,
                 misfit_reach: float = MISFIT_REACH, harmonics: int | None = HARMONICS,
                 parity: Parity | None = None) -> "ErrorTerms":
    """The error's terms in linear time: exact sums over arcs of phase, Lipschitz only where signs are uncertain.

    ``exact_differences`` evaluates that many differences a − b per cluster group exactly (O(p·n) each), each
    group's own worst or, with ``share_differences``, as many (group, difference) pairs where they lower the
    groups' summed band most;
    ``waveform_groups`` splits each cluster by neuron offset, each group with its own waveform;
    ``exact_inputs`` times p inputs get the exact hidden activations (O(d_mlp) each), where the rest is the
    largest share of the bound; the neurons outside every cluster get their exact activations on every input
    when there are at most ``exact_loose`` times d_mlp / p of them (O(p²) each, so O(exact_loose·p·d_mlp) in
    all), and otherwise the bound relu(F_a + b_in) + relu(F_b) on their activations; what room that budget
    leaves goes to the cluster neurons whose residuals reach furthest past ``misfit_reach``, taken out of the arcs.
    With sign patterns the remainder is also bounded by the ideal waveform's first ``harmonics`` harmonics (None:
    not), on every input, the exact ones included. ``parity``: the explanation's parity term (an even p).
    """
    counts = {"tracked_extra": tracked_extra, "directions": directions, "band_iterations": band_iterations,
              "exact_differences": exact_differences, "waveform_groups": waveform_groups,
              "exact_inputs": exact_inputs, "exact_loose": exact_loose, "harmonics": harmonics or 0}
    for name, count in counts.items():
        least = 1 if name == "waveform_groups" else 0
        if count < least:
            raise ValueError(f"{name} must be at least {least}, got {count}")
    ops = ops or Ops()
    p = tables.p
    budget = exact_loose * tables.d_mlp // p  # neurons evaluated exactly on every input
    dec = decompose(tables, clusters, ops, tracked_extra, directions, waveform_groups, budget, misfit_reach, parity)
    tracked, remainder, band, norm_squares = _cluster_sums(dec, tables, sign_patterns, band_iterations,
                                                           exact_differences, share_differences, ops)
    if len(dec.loose) <= budget:
        loose = _exact_loose(tracked, tables, dec, ops)
    else:
        loose = _loose_bound(tracked, tables, dec, ops)
    tracked.subtract_explanation(dec)
    harmonic = _remainder_by_harmonics(dec, p, harmonics, ops) if sign_patterns and harmonics is not None else None
    if sign_patterns:
        remainder = np.minimum(remainder, _remainder_by_norms(norm_squares, targets(p), dec.remainder_norms, ops))
    if harmonic is not None:
        remainder = np.minimum(remainder, harmonic)
    ops(p * p * 2)
    error = ErrorTerms(dec, tracked, remainder + band + loose)
    _exact_inputs(error, tables, exact_inputs * p, harmonic, ops)
    return error


def _cluster_sums(dec: Decomposition, tables: SeparableTables, sign_patterns: bool, band_iterations: int,
                  exact_differences: int, share_differences: bool,
                  ops: Ops) -> tuple["_Tracked", np.ndarray, np.ndarray, np.ndarray]:
    """Every cluster group's sums over arcs, added up and made exact on the chosen differences: the tracked part,
    and per input ``[p, p]`` the remainder's bound, the band's and (with sign patterns) ‖h‖₂²'s over the arcs.

    Each group takes its own ``exact_differences`` worst differences as it comes or, ``share_differences``, the
    groups share that budget once every group's band is known (``_min_max_pairs``; their bands ``[G, p, p]`` are
    kept until then). The groups' tables share one workspace, freed before the exact evaluations allocate theirs.
    """
    p = tables.p
    tracked = _Tracked.empty(p, dec)
    remainder, band, norm_squares = np.zeros((p, p)), np.zeros((p, p)), np.zeros((p, p))
    shared = exact_differences > 0 and share_differences and len(dec.clusters) > 0
    bands = np.empty((len(dec.clusters) if shared else 0, p, p))
    workspace, sums = arcs.Workspace(), None
    for g, term in enumerate(dec.clusters):
        if sign_patterns:
            sums = _sign_pattern_sums(term, p, band_iterations, ops, workspace)
            norm_squares += _activation_norm(term, p, ops, workspace) ** 2
        else:
            sums = _lipschitz_sums(term, p, ops, workspace)
        tracked.add(term, sums.found[:-1])
        remainder += sums.found[-1]
        if shared:
            bands[g] = sums.band
            continue
        if exact_differences > 0:
            worst = np.argsort(-_band_by_difference(sums.band))[:exact_differences]
            _exact_differences(term, tables, worst, tracked, remainder, sums.band, ops)
            ops(p * p)
        band += sums.band
    del workspace, sums
    if shared:
        by_difference = np.stack([_band_by_difference(group_band) for group_band in bands])
        ops(bands.size + by_difference.size * np.log2(max(p, 2)))
        chosen = _min_max_pairs(by_difference, min(exact_differences, p) * len(bands))
        for term, group_band, differences in zip(dec.clusters, bands, chosen):
            _exact_differences(term, tables, np.flatnonzero(differences), tracked, remainder, group_band, ops)
            band += group_band
    return tracked, remainder, band, norm_squares


def _exact_inputs(error: "ErrorTerms", tables: SeparableTables, count: int, harmonic: np.ndarray | None, ops: Ops,
                  chunk_elements: int = 1 << 20) -> None:
    """Replace the error's terms by the quadratic tier's, from the exact hidden activations, on the ``count``
    inputs where the rest (band, remainder, loose neurons) is the largest share of the bound: mostly those whose
    signs the residuals decide, which the band covers loosely (docs/bounds.md §3). O(count·d_mlp), in chunks
    small enough that the allocator reuses their memory (fresh memory costs page faults)."""
    dec, p = error.dec, tables.p
    count = min(count, p * p)
    if count <= 0:
        return
    share = error.rest / np.maximum(error.tracked.over_c(dec, ops), 1e-12)
    chosen = np.argpartition(-share.ravel(), count - 1)[:count]
    ops(4 * p * p)
    order, edges = _group_order(dec)
    from_a, from_b = tables.F_a[:, order] + tables.b_in[order], tables.F_b[:, order]
    step = max(1, chunk_elements // max(len(order), 1))
    for a, b, hidden, norm_squares in _hidden_in_chunks(from_a, from_b, chosen, p, edges[-2], step):
        exact = _exact_terms(hidden, norm_squares, dec, edges, ops)
        error.tracked.replace((a, b), exact.phasors, exact.coordinates, dec)
        error.rest[a, b] = exact.rest((a + b) % p, dec, ops, None if harmonic is None else harmonic[a, b])


def _activation_norm(term: ClusterTerms, p: int, ops: Ops, workspace: arcs.Workspace) -> np.ndarray:
    """A bound on ‖h‖₂ over the group's neurons per input ``[p, p]``, for h = relu(r x + η) and for the
    signed h' = (r x + η)·1[x > 0] alike: the ideal activations' norm over the on-set (exact arc sums of r² x²)
    plus ‖ε_a[a]‖₂ + ‖ε_b[b]‖₂ (docs/bounds.md §1, the remainder by Cauchy–Schwarz)."""
    n = len(term.r)
    squares = workspace.array("squares", (p, p))
    performed = arcs.square_sums(term.phase, term.kappa, term.beta, 2 * np.pi * term.frequency / p,
                                 arcs.square_prefix(term.phase, term.r), squares)
    residual_a, residual_b = term.residual_norms(ops)
    ops(performed.sum() + n * 9 * 4 + 4 * p * p)
    return np.sqrt(np.maximum(squares, 0.0)) + residual_a[:, None] + residual_b[None, :]


def _remainder_by_norms(norm_squares: np.ndarray, target: np.ndarray, norms: np.ndarray, ops: Ops) -> np.ndarray:
    """|Σ_i h_i (ρ_i(a+b) − ρ_i(c))| ≤ ‖h‖₂ (‖ρ(a+b)‖₂ + max_c ‖ρ(c)‖₂) for every c, by Cauchy–Schwarz over
    a set of neurons, given a bound on their ‖h‖₂² per input and each input's a+b (``target``), of one shape, and
    ``norms`` ‖ρ(c)‖₂ over the set per output c (docs/bounds.md §1)."""
    ops(4 * norm_squares.size)
    return np.sqrt(norm_squares) * (norms[target] + norms.max(initial=0.0))


def waveform_harmonics(kappa: float, beta: float, delta: np.ndarray, harmonics: int = HARMONICS,
                       grid: int = WAVEFORM_GRID) -> tuple[np.ndarray, np.ndarray]:
    """relu(κ + 2A cos θ + 2B cos 2θ) = Σ_{m ≤ M} a_m cos mθ + t(θ) for each δ (A = cos(δ/2), B = β cos δ): a_m
    ``[len(δ), M + 1]`` and a bound on sup_θ |t(θ)| ``[len(δ)]``. Any a_m make this an identity; the grid's FFT makes
    the tail small. Between grid points t strays from its chord by the curvature of the waveform and the series,
    and, where the relu's argument changes sign, by the kink's gap below the chord (docs/bounds.md §1)."""
    if not 0 <= harmonics < grid // 2:
        raise ValueError(f"the waveform's expansion needs 0 <= harmonics < grid / 2; got {harmonics} on {grid} points")
    A, B = np.cos(delta / 2), beta * np.cos(delta)
    theta = 2 * np.pi * np.arange(grid) / grid
    argument = kappa + 2 * A[:, None] * np.cos(theta) + 2 * B[:, None] * np.cos(2 * theta)
    wave = np.maximum(argument, 0.0)
    spectrum = np.fft.rfft(wave, axis=1).real / grid  # the wave is even in θ: cosines alone
    spectrum[:, harmonics + 1:] = 0.0
    coefficients = spectrum[:, :harmonics + 1] * np.where(np.arange(harmonics + 1) > 0, 2.0, 1.0)
    tail = np.abs(wave - np.fft.irfft(spectrum * grid, n=grid, axis=1))
    following, argument_following = np.roll(tail, -1, axis=1), np.roll(argument, -1, axis=1)
    crossing = np.maximum(-argument * argument_following, 0.0)  # > 0 where the argument changes sign
    kink = crossing / np.maximum(np.abs(argument) + np.abs(argument_following), np.finfo(float).tiny)
    curvature = 2 * np.abs(A) + 8 * np.abs(B) + np.abs(coefficients) @ np.arange(harmonics + 1) ** 2
    return coefficients, (np.maximum(tail, following) + kink).max(1) + curvature * (2 * np.pi / grid) ** 2 / 8


def _remainder_by_harmonics(dec: Decomposition, p: int, harmonics: int, ops: Ops) -> np.ndarray:
    """A third bound on |Σ_i h_i (ρ_i(a+b) − ρ_i(c))| over the neurons in the arcs, for every c ``[p, p]``, valid
    for the exact h and for the arcs' h' alike: the ideal activations expanded in harmonics of their phase, each
    harmonic's sum against ρ taken per output c (the groups of one frequency together), then the expansion's tail
    and the residuals by Cauchy–Schwarz (docs/bounds.md §1, the remainder by harmonics). O(M·n·p) per group plus
    O(p²·(M + 1)) per group."""
    folded = np.arange(p // 2 + 1)  # δ and −δ give the same a_m: differences d and p − d share a row
    coefficients, harmonic_sums = [], []
    tail_squares, residual_squares = np.zeros(len(folded)), np.zeros((p, p))
    for term in dec.clusters:
        weights, tail = waveform_harmonics(term.kappa, term.beta, 2 * np.pi * term.frequency / p * folded, harmonics,
                                           WAVEFORM_GRID)
        coefficients.append(weights)
        angle = np.outer(np.arange(harmonics + 1), term.phase)  # R_m(c) = Σ_i r_i e^{imφ_i} ρ_i(c)
        harmonic_sums.append((term.r * np.cos(angle) @ term.remainder, term.r * np.sin(angle) @ term.remainder))
        tail_squares += (tail * np.linalg.norm(term.r)) ** 2
        residual_a, residual_b = term.residual_norms(ops)
        residual_squares += (residual_a[:, None] + residual_b[None, :]) ** 2
        n = len(term.r)
        ops(WAVEFORM_GRID * len(folded) * (20 + 5 * np.log2(WAVEFORM_GRID)) + (harmonics + 1) * n * (4 * p + 10)
            + 3 * p * p)
    if not coefficients:
        return np.zeros((p, p))
    by_difference = _harmonic_table(coefficients, harmonic_sums, [term.frequency for term in dec.clusters], ops)
    difference, target = np.minimum(difference_index(p), p - difference_index(p)), targets(p)
    norms = dec.remainder_norms
    ops(by_difference.size + 10 * p * p)
    return (by_difference[difference, target] + by_difference.max(1)[difference]
            + (np.sqrt(tail_squares)[difference] + np.sqrt(residual_squares)) * (norms[target] + norms.max()))


def _harmonic_table(coefficients: list[np.ndarray], harmonic_sums: list[tuple[np.ndarray, np.ndarray]],
                    frequencies: list[int], ops: Ops) -> np.ndarray:
    """Q(δ, c) = Σ_k Σ_m |Σ_g a_{g,m}(δ) R_{g,m}(c)| ``[p // 2 + 1, p]``, the inner sum over the groups g of
    frequency k: they share the input's shift u and δ, so their harmonics add before the modulus is taken. A
    frequency with one group takes |a_m|·|R_m| in one product; ``coefficients`` a ``[p // 2 + 1, M + 1]`` and
    ``harmonic_sums`` (Re R, Im R) ``[M + 1, p]`` per group."""
    rows, p = coefficients[0].shape[0], harmonic_sums[0][0].shape[1]
    table, single_weights, single_sums = np.zeros((rows, p)), [], []
    for frequency in dict.fromkeys(frequencies):
        groups = [g for g, k in enumerate(frequencies) if k == frequency]
        if len(groups) == 1:
            single_weights.append(np.abs(coefficients[groups[0]]))
            single_sums.append(np.hypot(*harmonic_sums[groups[0]]))
            continue
        for m in range(coefficients[0].shape[1]):
            weights = np.stack([coefficients[g][:, m] for g in groups], axis=1)  # [rows, G]
            real = weights @ np.stack([harmonic_sums[g][0][m] for g in groups])
            imaginary = weights @ np.stack([harmonic_sums[g][1][m] for g in groups])
            table += np.hypot(real, imaginary)
        ops(coefficients[0].size * p * (4 * len(groups) + 6))
    if single_weights:
        table += np.concatenate(single_weights, axis=1) @ np.concatenate(single_sums)
        ops(2 * rows * p * sum(w.shape[1] for w in single_weights))
    return table


@dataclass
class ErrorTerms:
    """err(a+b) − err(c) per input, split in two: the tracked part E(a+b) − E(c), known exactly as phasors and
    direction coordinates, and ``rest`` ``[p, p]``, a bound on everything else that holds for every c."""

    dec: Decomposition
    tracked: "_Tracked"
    rest: np.ndarray

    def bound(self, ops: Ops, exact_over_c: bool = False) -> np.ndarray:
        """B(a, b) ≥ max_c |err(a+b) − err(c)| ``[p, p]``, rounding slack included (``bound_and_floor``'s first
        part, for callers that need no certificate)."""
        return self.bound_and_floor(ops, exact_over_c)[0]

    def refine(self, bound: np.ndarray, steps: np.ndarray, count: int, ops: Ops) -> np.ndarray:
        """``bound`` with the tracked part's maximum over c taken exactly on the ``count`` inputs where it is
        likely loosest: ranked by B over the largest exact tracked difference at the listed steps (``steps``
        ``[p, J]``, as in ``Competitors``), a lower bound on that maximum. O(p²·J·(F + R) + count·p·(F + R)),
        linear in the parameter count for a fixed J and ``count`` ∝ p."""
        if count <= 0:
            return bound
        sampled = self._largest_tracked_difference(steps, ops)
        looseness = (bound / np.maximum(sampled, 1e-12)).ravel()
        count = min(count, looseness.size)
        inputs = np.unravel_index(np.argpartition(-looseness, count - 1)[:count], bound.shape)
        basis = output_basis(self.dec.frequencies, self.dec.directions, bound.shape[0])
        target = targets(bound.shape[0])[inputs]
        exact = _with_slack(max_over_c(self.tracked.stacked(inputs), target, basis, ops) + self.rest[inputs])
        refined = bound.copy()
        refined[inputs] = np.minimum(bound[inputs], exact)
        ops(3 * looseness.size + count * np.log2(max(looseness.size, 2)) + 2 * count)
        return refined

    def gains(self, steps: np.ndarray, ops: Ops, inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Lower bounds on err(a+b) − err(c), what the error adds to the model's margin over c, at c = a+b − j for
        the steps j listed per difference a − b (``steps`` ``[p, J]``, as in ``Competitors``): the tracked part's
        signed difference exactly, less rest: ``[p, p, J]``, or ``[n, J]`` for the given inputs (a, b)."""
        exact = self.tracked.differences(self.dec, steps, ops, inputs)
        ops(exact.size * 5)
        rest = self.rest if inputs is None else self.rest[inputs]
        return _less_slack(exact, rest[..., None])

    def bound_and_floor(self, ops: Ops, exact_over_c: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``bound`` and, from the same pass over the tracked values, a lower bound on err(a+b) − err(c) for every
        c ``[p, p]``: E(a+b) less the largest |E(c)| and rest (the certificate takes it at −B where that is
        more, ``least_gain``)."""
        at_target, peak = self.tracked.at_target_and_peak(self.dec, ops)
        over_c = self.tracked.over_c(self.dec, ops, exact=True) if exact_over_c else np.abs(at_target) + peak
        ops(self.rest.size * 9)
        return _with_slack(over_c + self.rest), _less_slack(at_target, peak + self.rest)

    def _largest_tracked_difference(self, steps: np.ndarray, ops: Ops, chunk: int = 1 << 15) -> np.ndarray:
        """A lower bound on the tracked part's maximum over c per input ``[p, p]``: max |E(a+b) − E(c)| over the
        listed steps and over the outputs where the input's largest tracked phasors peak or dip
        (``_Tracked.largest_at_peaks``). Taken in chunks of inputs, so that the differences ``[p², J]`` (256 bytes
        per input at J = 32) are never held all at once; the certificate computes its few inputs' again."""
        p = self.rest.shape[0]
        largest = np.empty(p * p)
        for start in range(0, p * p, chunk):
            inputs = np.divmod(np.arange(start, min(start + chunk, p * p)), p)
            changes = self.tracked.differences(self.dec, steps, ops, inputs)
            largest[start:start + len(inputs[0])] = np.maximum(np.abs(changes).max(-1, initial=0.0),
                                                               self.tracked.largest_at_peaks(self.dec, inputs, ops))
        return largest.reshape(p, p)


def _with_slack(bound: np.ndarray) -> np.ndarray:
    """Inflate a bound far beyond the accumulated rounding (docs/bounds.md §6)."""
    return bound * (1 + SAFETY) + SAFETY


def least_gain(floor: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """A lower bound on err(a+b) − err(c) over every c ``[p, p]``: the ``floor`` of ``ErrorTerms.bound_and_floor``,
    or −B where that is more (B bounds the size)."""
    return np.maximum(floor, -bound)


def _less_slack(value: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """value − rest, lowered by as much as ``_with_slack`` raises |value| + rest: a lower bound on a quantity known
    to within rest of value, far below the accumulated rounding (docs/bounds.md §6)."""
    return value - rest - SAFETY * (np.abs(value) + rest + 1)


@dataclass
class _Tracked:
    """The tracked part of the error per input: phasors Y_f ``[F, p, p]`` and direction coordinates ``[R, p, p]``."""

    phasors: np.ndarray
    coordinates: np.ndarray

    @classmethod
    def empty(cls, p: int, dec: Decomposition) -> "_Tracked":
        return cls(arcs.touched((len(dec.frequencies), p, p), complex), arcs.touched((len(dec.directions), p, p)))

    def add(self, term: ClusterTerms, sums: np.ndarray, inputs: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Add a cluster's summed output weights ``[W, p, p]`` (real and imaginary parts of the phasor
        coefficients, then direction coordinates, as ``ClusterTerms.output_weights``), or ``[W, n]`` at the
        given inputs (a, b), each listed once."""
        T = len(term.tracked)
        where = (slice(None), slice(None)) if inputs is None else inputs
        for t, column in enumerate(term.columns):
            if inputs is None:
                _add_parts(self.phasors[column], sums[t], sums[T + t])  # compiled: no [p, p] complex temporary
            else:
                self.phasors[(column, *where)] += sums[t] + 1j * sums[T + t]
        for t, column in enumerate(range(term.direction_columns.start, term.direction_columns.stop)):
            self.coordinates[(column, *where)] += sums[2 * T + t]

    def stacked(self, inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Every tracked value as a real number, in the order of ``output_basis`` (Re Y_f, Im Y_f, then the
        direction coordinates): ``[2F + R, p²]``, or ``[2F + R, n]`` at the given inputs (a, b)."""
        if inputs is None:
            p = self.phasors.shape[1]
            return np.concatenate([self.phasors.real, self.phasors.imag, self.coordinates]).reshape(-1, p * p)
        picked = self.phasors[:, inputs[0], inputs[1]]
        return np.concatenate([picked.real, picked.imag, self.coordinates[:, inputs[0], inputs[1]]])

    def subtract_explanation(self, dec: Decomposition, inputs: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Subtract the explanation's key-frequency phasors, at every input or at the given inputs (a, b)."""
        where = (slice(None), slice(None)) if inputs is None else inputs
        for k, phasor in dec.target_phasors.items():
            self.phasors[(np.searchsorted(dec.frequencies, k), *where)] -= phasor[where]

    def replace(self, inputs: tuple[np.ndarray, np.ndarray], phasors: np.ndarray, coordinates: np.ndarray,
                dec: Decomposition) -> None:
        """Set the values at the inputs (a, b) to the model's sums ``phasors`` ``[F, n]`` and ``coordinates``
        ``[R, n]`` less the explanation, as ``subtract_explanation`` leaves every other input."""
        self.phasors[:, inputs[0], inputs[1]] = phasors
        self.coordinates[:, inputs[0], inputs[1]] = coordinates
        self.subtract_explanation(dec, inputs)

    def over_c(self, dec: Decomposition, ops: Ops, exact: bool = False) -> np.ndarray:
        """A bound on max_c |E(a+b) − E(c)| for E(c) = Σ_f Re(Y_f e^{iωfc}) + Σ_j Y_j v_j(c).

        |E(a+b)| + Σ_f |Y_f| + Σ_j |Y_j| max|v_j| in O(p²(F + R)), or the maximum itself in O(p³(F + R)).
        """
        p = self.phasors.shape[1]
        if exact:
            basis = output_basis(dec.frequencies, dec.directions, p)
            return max_over_c(self.stacked(), targets(p).ravel(), basis, ops).reshape(p, p)
        at_target, peak = self.at_target_and_peak(dec, ops)
        ops(at_target.size)
        return np.abs(at_target) + peak

    def at_target_and_peak(self, dec: Decomposition, ops: Ops) -> tuple[np.ndarray, np.ndarray]:
        """E(a+b) and Σ_f |Y_f| + Σ_j |Y_j| max|v_j| ≥ max_c |E(c)| per input, ``[p, p]`` each, in O(p²(F + R))."""
        p = self.phasors.shape[1]
        ops(p * p * (10 * len(self.phasors) + 4 * len(self.coordinates)))
        return _target_and_peak(self.phasors, self.coordinates, rotation(dec.frequencies, p), dec.directions,
                                np.abs(dec.directions).max(1, initial=0.0))

    def largest_at_peaks(self, dec: Decomposition, inputs: tuple[np.ndarray, np.ndarray], ops: Ops,
                         phasors: int = PEAK_PHASORS) -> np.ndarray:
        """max |E(a+b) − E(c)| over the outputs c where one of the input's ``phasors`` largest tracked phasors peaks
        or dips, Re(Y_f e^{iωfc}) = ±|Y_f| as nearly as an integer c allows, at the inputs (a, b): ``[n]``. A lower
        bound on the maximum over every c that finds the largest difference where the listed outputs, chosen by
        the explanation's margin, miss it; O(phasors·(F + R)) per input."""
        p, F, R = self.phasors.shape[1], len(dec.frequencies), len(dec.directions)
        turn = rotation(dec.frequencies, p).T  # [c, F]
        inverse = np.array([pow(int(f), -1, p) if np.gcd(int(f), p) == 1 else -1 for f in dec.frequencies], np.int64)
        out = np.zeros(len(inputs[0]))
        _largest_at_peaks(self.phasors, self.coordinates, np.ascontiguousarray(turn.real),
                          np.ascontiguousarray(turn.imag), np.ascontiguousarray(dec.directions.T), inverse,
                          min(phasors, F), np.asarray(inputs[0]), np.asarray(inputs[1]), out)
        ops(len(out) * (6 * F + 2 * R + 2 * min(phasors, F) * (4 * F + 2 * R + 12)))
        return out

    def differences(self, dec: Decomposition, steps: np.ndarray, ops: Ops,
                    inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """E(a+b) − E(a+b − j) exactly for the steps j listed per difference a − b (``steps`` ``[p, J]``):
        ``[p, p, J]``, or ``[n, J]`` for the given inputs (a, b). O(J·(F + R)) per input, a few small matrix
        products per difference."""
        p, J = self.phasors.shape[1], steps.shape[1]
        a, b = np.divmod(np.arange(p * p), p) if inputs is None else inputs
        turn = rotation(dec.frequencies, p).T  # [c, F]
        out = arcs.touched((len(a), J))
        _step_differences(self.phasors, self.coordinates, np.ascontiguousarray(turn.real),
                          np.ascontiguousarray(turn.imag), np.ascontiguousarray(dec.directions.T), steps,
                          np.asarray(a), np.asarray(b), out)
        ops(len(a) * (J * (4 * len(dec.frequencies) + 2 * len(dec.directions) + 1) + 6 * len(dec.frequencies)))
        return out.reshape(p, p, J) if inputs is None else out


@njit(cache=True, inline="always")
def _turned(phasors: np.ndarray, coordinates: np.ndarray, cos: np.ndarray, sin: np.ndarray, directions: np.ndarray,
            x: int, y: int, target: int, turned_re: np.ndarray, turned_im: np.ndarray, coordinate: np.ndarray) -> float:
    """Input (x, y)'s Y_f e^{iωf t} (real and imaginary parts) and direction coordinates into the given arrays, t =
    ``target``; returns E(t). E(c) = Σ_f Re(Y_f e^{iωfc}) + Σ_r Y_r v_r(c), e^{iωfc} = cos + i·sin ``[c, F]``."""
    at_target = 0.0
    for f in range(len(turned_re)):
        value = phasors[f, x, y]
        turned_re[f] = value.real * cos[target, f] - value.imag * sin[target, f]
        turned_im[f] = value.real * sin[target, f] + value.imag * cos[target, f]
        at_target += turned_re[f]
    for r in range(len(coordinate)):
        coordinate[r] = coordinates[r, x, y]
        at_target += coordinate[r] * directions[target, r]
    return at_target


@njit(cache=True, inline="always")
def _before(turned_re: np.ndarray, turned_im: np.ndarray, coordinate: np.ndarray, cos: np.ndarray, sin: np.ndarray,
            directions: np.ndarray, step: int, c: int) -> float:
    """E(t − j) = Σ_f Re(Y_f e^{iωf t} e^{−iωf j}) + Σ_r Y_r v_r(t − j) from ``_turned``'s arrays, j = ``step``,
    c = t − j."""
    there = 0.0
    for f in range(len(turned_re)):
        there += turned_re[f] * cos[step, f] + turned_im[f] * sin[step, f]
    for r in range(len(coordinate)):
        there += coordinate[r] * directions[c, r]
    return there


@njit(cache=True, parallel=True)
def _step_differences(phasors: np.ndarray, coordinates: np.ndarray, cos: np.ndarray, sin: np.ndarray,
                      directions: np.ndarray, steps: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """E(t) − E(t − j) at each input (a, b), t = a+b, for its difference's steps j, into ``out`` ``[n, J]``.

    E(c) = Σ_f Re(Y_f e^{iωfc}) + Σ_r Y_r v_r(c), with e^{iωfc} = cos + i·sin ``[c, F]`` and v ``[c, R]``.
    """
    F, R, p, J = phasors.shape[0], coordinates.shape[0], cos.shape[0], steps.shape[1]
    for i in prange(len(a)):
        x, y = a[i], b[i]
        target, difference = (x + y) % p, (x - y) % p
        turned_re, turned_im, coordinate = np.empty(F), np.empty(F), np.empty(R)
        at_target = _turned(phasors, coordinates, cos, sin, directions, x, y, target, turned_re, turned_im, coordinate)
        for q in range(J):
            step = steps[difference, q]
            c = (target - step) % p
            out[i, q] = at_target - _before(turned_re, turned_im, coordinate, cos, sin, directions, step, c)


@njit(cache=True, parallel=True)
def _largest_at_peaks(phasors: np.ndarray, coordinates: np.ndarray, cos: np.ndarray, sin: np.ndarray,
                      directions: np.ndarray, inverse: np.ndarray, count: int, a: np.ndarray, b: np.ndarray,
                      out: np.ndarray) -> None:
    """``_Tracked.largest_at_peaks`` into ``out`` ``[n]``: per input, E(t) − E(c) at the outputs c where each of its
    ``count`` largest phasors Y_f peaks or dips (f·c ≡ (0 or π − arg Y_f)·p/2π, c by the inverse of f mod p;
    frequencies without one, −1, are passed over), t = a+b, as in ``_step_differences``."""
    F, R, p = phasors.shape[0], coordinates.shape[0], cos.shape[0]
    for i in prange(len(a)):
        x, y = a[i], b[i]
        target = (x + y) % p
        turned_re, turned_im, coordinate, size = np.empty(F), np.empty(F), np.empty(R), np.empty(F)
        at_target = _turned(phasors, coordinates, cos, sin, directions, x, y, target, turned_re, turned_im, coordinate)
        for f in range(F):
            size[f] = abs(phasors[f, x, y])
        largest = 0.0
        for _ in range(count):
            f = np.argmax(size)
            size[f] = -1.0
            if inverse[f] < 0:
                continue
            angle = np.arctan2(phasors[f, x, y].imag, phasors[f, x, y].real)
            for turn in (0.0, np.pi):
                m = int(np.rint((turn - angle) * (p / (2 * np.pi)))) % p
                c = m * inverse[f] % p
                step = (target - c) % p
                there = _before(turned_re, turned_im, coordinate, cos, sin, directions, step, c)
                largest = max(largest, abs(at_target - there))
        out[i] = largest


@njit(cache=True, parallel=True)
def _target_and_peak(phasors: np.ndarray, coordinates: np.ndarray, rotation: np.ndarray, directions: np.ndarray,
                     direction_peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E(a+b) and Σ_f |Y_f| + Σ_j |Y_j| max|v_j| per input ``[p, p]`` each (``_Tracked.at_target_and_peak``)."""
    F, p = phasors.shape[0], phasors.shape[1]
    at_target, peak = np.empty((p, p)), np.empty((p, p))
    for a in prange(p):
        row_target, row_peak = np.zeros(p), np.zeros(p)
        for f in range(F):
            for b in range(p):
                y, turn = phasors[f, a, b], rotation[f, (a + b) % p]
                row_target[b] += y.real * turn.real - y.imag * turn.imag
                row_peak[b] += np.sqrt(y.real * y.real + y.imag * y.imag)
        for j in range(coordinates.shape[0]):
            for b in range(p):
                y = coordinates[j, a, b]
                row_target[b] += y * directions[j, (a + b) % p]
                row_peak[b] += abs(y) * direction_peaks[j]
        at_target[a], peak[a] = row_target, row_peak
    return at_target, peak


@njit(cache=True, parallel=True)
def _add_parts(phasor: np.ndarray, real: np.ndarray, imaginary: np.ndarray) -> None:
    """phasor += real + i·imaginary, in one pass over ``[rows, p]`` arrays."""
    for a in prange(phasor.shape[0]):
        for b in range(phasor.shape[1]):
            phasor[a, b] += complex(real[a, b], imaginary[a, b])


def _exact_loose(tracked: "_Tracked", tables: SeparableTables, dec: Decomposition, ops: Ops,
                 chunk_elements: int = 1 << 20) -> np.ndarray:
    """Neurons outside the arcs from their exact activations on every input: their tracked part added to
    ``tracked``, and the bound on the rest, Σ_i h_i (ρ_i(a+b) − ρ_i(c)), returned ``[p, p]`` (``_loose_rest``)."""
    p, n = tables.p, len(dec.loose)
    rest = np.zeros((p, p))
    if n == 0:
        return rest
    from_a = tables.F_a[:, dec.loose] + tables.b_in[dec.loose]
    from_b = tables.F_b[:, dec.loose]
    for a, b, hidden, _ in _hidden_in_chunks(from_a, from_b, np.arange(p * p), p, 0, max(1, chunk_elements // n)):
        phasors, coordinates, spans, norm_squares = _loose_terms(hidden, dec, ops)
        rest[a, b] = _loose_rest(spans, norm_squares, (a + b) % p, dec, ops)
        tracked.phasors[:, a, b] += phasors
        tracked.coordinates[:, a, b] += coordinates
    ops(3 * p * p * n)  # the activations
    return rest


def _loose_terms(hidden: np.ndarray, dec: Decomposition,
                 ops: Ops) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The loose neurons' part at n inputs from their activations ``[n, n_loose]``: tracked phasors ``[F, n]``,
    direction coordinates ``[R, n]``, Σ_i h_i ptp(ρ_i) and ‖h‖₂² ``[n]`` (``Decomposition.loose_split``)."""
    F, R = len(dec.frequencies), len(dec.directions)
    sums = dec.loose_split(ops).weights.T @ hidden.T  # [2F + R + 1, n]
    ops(hidden.size * 2 * (len(sums) + 1) + len(hidden) * (2 * F + R))
    return sums[:F] + 1j * sums[F:2 * F], sums[2 * F:2 * F + R], sums[-1], np.einsum("ij,ij->i", hidden, hidden)


def _loose_rest(spans: np.ndarray, norm_squares: np.ndarray, target: np.ndarray, dec: Decomposition,
                ops: Ops) -> np.ndarray:
    """The loose neurons' remainder, Σ_i h_i (ρ_i(a+b) − ρ_i(c)), bounded both ways (docs/bounds.md §1): by
    Σ_i h_i ptp(ρ_i) (``spans``) and by Cauchy–Schwarz over them, the smaller per input."""
    ops(len(spans))
    return np.minimum(spans, _remainder_by_norms(norm_squares, target, dec.loose_split(ops).remainder_norms, ops))


def _loose_bound(tracked: "_Tracked", tables: SeparableTables, dec: Decomposition, ops: Ops) -> np.ndarray:
    """Neurons outside every cluster: h_i ≤ relu(F_a + b_in) + relu(F_b), times the span of their output row; the
    parity term's neurons by the parity cell of each input instead (``_parity_cells``)."""
    p, other = tables.p, ~dec.parity
    bound = np.zeros((p, p))
    if other.any():
        idx, span = dec.loose[other], dec.loose_span[other]
        ua = np.maximum(tables.F_a[:, idx] + tables.b_in[idx], 0) @ span
        ub = np.maximum(tables.F_b[:, idx], 0) @ span
        ops(6 * p * len(idx) + p ** 2)
        bound += ua[:, None] + ub[None, :]
    if dec.parity.any():
        bound += _parity_cells(tracked, tables, dec, ops)
    return bound


def _parity_cells(tracked: "_Tracked", tables: SeparableTables, dec: Decomposition, ops: Ops) -> np.ndarray:
    """The parity term's neurons, bounded in linear time by the cell (a mod 2, b mod 2) of each input (docs/bounds.md
    §1): there h_i lies in [relu(lo), relu(hi)], lo and hi the sums of F_a's and F_b's extremes over a and b of those
    parities and b_in. The middle m_i of that range enters the tracked part and the remainder as an exact activation
    would (``_loose_terms``); the half-width adds its times ptp(W_L[i]). Returns that rest ``[p, p]``."""
    p, idx = tables.p, dec.loose[dec.parity]
    extremes = [np.stack([reduce(table[x::2, idx], axis=0) for x in (0, 1)])  # [parity, n]
                for table in (tables.F_a, tables.F_b) for reduce in (np.min, np.max)]
    low = np.maximum(extremes[0][:, None] + extremes[2][None, :] + tables.b_in[idx], 0).reshape(4, -1)
    high = np.maximum(extremes[1][:, None] + extremes[3][None, :] + tables.b_in[idx], 0).reshape(4, -1)
    hidden = np.zeros((4, len(dec.loose)))
    hidden[:, dec.parity] = (low + high) / 2
    phasors, coordinates, spans, norm_squares = _loose_terms(hidden, dec, ops)
    cell = 2 * (np.arange(p)[:, None] % 2) + np.arange(p)[None, :] % 2  # [p, p]: a mod 2, then b mod 2
    tracked.phasors += phasors[:, cell]
    tracked.coordinates += coordinates[:, cell]
    rest = _loose_rest(spans[cell].ravel(), norm_squares[cell].ravel(), targets(p).ravel(), dec, ops).reshape(p, p)
    ops(4 * p * len(idx) + 12 * len(idx) + p * p * (2 * len(phasors) + len(coordinates) + 2))
    return rest + ((high - low) / 2 @ dec.loose_span[dec.parity])[cell]


@dataclass
class _ExactTerms:
    """The error's terms from exact hidden activations at n inputs (``_exact_terms``)."""

    phasors: np.ndarray  # [F, n] the model's tracked phasors (the explanation not subtracted)
    coordinates: np.ndarray  # [R, n]
    remainder: np.ndarray  # [n] Σ_i h_i ptp(ρ_i) over the clustered neurons
    norm_squares: np.ndarray  # [n] ‖h‖² over the clustered neurons
    loose: np.ndarray  # [n] Σ_i h_i ptp(ρ_i) over the loose ones, ρ_i what their tracked part leaves
    loose_norm_squares: np.ndarray  # [n] ‖h‖² over the loose neurons

    def rest(self, target: np.ndarray, dec: Decomposition, ops: Ops, harmonic: np.ndarray | None = None) -> np.ndarray:
        """The bound on everything but the tracked part, given each input's a+b: the remainder of the clustered
        neurons, the smallest of its bounds (``harmonic``: ``_remainder_by_harmonics`` at these inputs), and that of
        the loose ones, the smaller of its two (docs/bounds.md §1)."""
        ops(3 * len(target))
        clustered = np.minimum(self.remainder, _remainder_by_norms(self.norm_squares, target, dec.remainder_norms, ops))
        if harmonic is not None:
            clustered = np.minimum(clustered, harmonic)
        if not len(dec.loose):
            return clustered
        return clustered + _loose_rest(self.loose, self.loose_norm_squares, target, dec, ops)


def _group_order(dec: Decomposition) -> tuple[np.ndarray, np.ndarray]:
    """Neurons reordered so that each cluster group's, and then the loose ones, are one slice: (order, edges)."""
    groups = [term.neurons for term in dec.clusters] + [dec.loose]
    return np.concatenate(groups).astype(np.int64), np.cumsum([0] + [len(group) for group in groups])


def _hidden_in_chunks(from_a: np.ndarray, from_b: np.ndarray, inputs: np.ndarray, p: int, clustered: int,
                      step: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(a, b, hidden, norm_squares) for ``step`` of the flat ``inputs`` a·p + b at a time, from ``_hidden``.
    One buffer serves every chunk, so that the allocator reuses its memory (fresh memory costs page faults)."""
    size = min(step, len(inputs))
    hidden, norm_squares = np.empty((size, from_a.shape[1])), np.empty(size)
    from_a, from_b = np.ascontiguousarray(from_a), np.ascontiguousarray(from_b)  # one compiled signature for all
    for lo in range(0, len(inputs), step):
        a, b = np.divmod(inputs[lo:lo + step], p)
        _hidden(from_a, from_b, a, b, clustered, hidden[:len(a)], norm_squares[:len(a)])
        yield a, b, hidden[:len(a)], norm_squares[:len(a)]


def _exact_terms(hidden: np.ndarray, norm_squares: np.ndarray, dec: Decomposition, edges: np.ndarray,
                 ops: Ops) -> _ExactTerms:
    """The error's terms at n inputs from their hidden activations ``[n, d_mlp]`` in ``_group_order`` and the
    squared norms of their clustered part."""
    n = len(hidden)
    phasors, coordinates = np.zeros((len(dec.frequencies), n), complex), np.zeros((len(dec.directions), n))
    remainder = np.zeros(n)
    for term, start, stop in zip(dec.clusters, edges[:-2], edges[1:-1]):
        sums = term.output_weights.T @ hidden[:, start:stop].T  # [W, n]
        T = len(term.tracked)
        phasors[term.columns] += sums[:T] + 1j * sums[T:2 * T]
        coordinates[term.direction_columns] += sums[2 * T:-1]
        remainder += sums[-1]
        ops(n * (stop - start) * 2 * len(sums))
    ops(3 * hidden.size + 2 * n * edges[-2])  # each activation, then its square in the clustered norm
    loose, loose_norm_squares = np.zeros(n), np.zeros(n)
    if len(dec.loose):  # their tracked part enters exactly, their remainder bounded in ``_ExactTerms.rest``
        loose_phasors, loose_coordinates, loose, loose_norm_squares = _loose_terms(hidden[:, edges[-2]:], dec, ops)
        phasors += loose_phasors
        coordinates += loose_coordinates
    return _ExactTerms(phasors, coordinates, remainder, norm_squares, loose, loose_norm_squares)


@njit(cache=True, parallel=True)
def _hidden(from_a: np.ndarray, from_b: np.ndarray, a: np.ndarray, b: np.ndarray, clustered: int, out: np.ndarray,
            norm_squares: np.ndarray) -> None:
    """out[q] = relu(from_a[a[q]] + from_b[b[q]]) for each input q, and its squared norm over the first
    ``clustered`` neurons into norm_squares[q], in one pass over the activations."""
    d = out.shape[1]
    for q in prange(len(a)):
        x, y = a[q], b[q]
        total = 0.0
        for i in range(clustered):
            h = max(from_a[x, i] + from_b[y, i], 0.0)
            out[q, i] = h
            total += h * h
        for i in range(clustered, d):
            out[q, i] = max(from_a[x, i] + from_b[y, i], 0.0)
        norm_squares[q] = total


def quadratic_error(tables: SeparableTables, clusters: list[Cluster], ops: Ops | None = None,
                    tracked_extra: int = TRACKED_EXTRA, directions: int = DIRECTIONS,
                    chunk_elements: int = 1 << 24, harmonics: int | None = HARMONICS,
                    parity: Parity | None = None) -> ErrorTerms:
    """The error's terms from the exact hidden activations (O(p²·d_mlp)); only the maximum over c is left, and the
    remainder's bound, the smallest of three (the third from the ideal waveform's first ``harmonics`` harmonics;
    None: not used); ``parity``: the explanation's parity term (an even p)."""
    ops = ops or Ops()
    p = tables.p
    dec = decompose(tables, clusters, ops, tracked_extra, directions, parity=parity)
    tracked, rest = _Tracked.empty(p, dec), np.empty((p, p))
    harmonic = None if harmonics is None else _remainder_by_harmonics(dec, p, harmonics, ops)
    order, edges = _group_order(dec)
    from_a, from_b = tables.F_a[:, order] + tables.b_in[order], tables.F_b[:, order]
    step = max(1, chunk_elements // (p * max(len(order), 1))) * p  # whole rows a
    for a, b, hidden, norm_squares in _hidden_in_chunks(from_a, from_b, np.arange(p * p), p, edges[-2], step):
        exact = _exact_terms(hidden, norm_squares, dec, edges, ops)
        rows, count = slice(a[0], a[-1] + 1), len(a) // p
        tracked.phasors[:, rows] = exact.phasors.reshape(-1, count, p)
        tracked.coordinates[:, rows] = exact.coordinates.reshape(-1, count, p)
        at = None if harmonic is None else harmonic[rows].ravel()
        rest[rows] = exact.rest((a + b) % p, dec, ops, at).reshape(count, p)
    tracked.subtract_explanation(dec)
    return ErrorTerms(dec, tracked, rest)


def max_over_c(values: np.ndarray, target: np.ndarray, basis: np.ndarray, ops: Ops, chunk: int = 4096) -> np.ndarray:
    """max_c |E(t) − E(c)| exactly per input, E(c) = Σ_m values_m basis_m(c), for real ``values`` ``[M, n]`` and
    ``basis`` ``[M, c]`` and each input's correct output t (``target`` ``[n]``): ``[n]``, in O(n·p·M)."""
    n, p = values.shape[1], basis.shape[1]
    out = np.empty(n)
    for lo in range(0, n, chunk):
        e = values[:, lo:lo + chunk].T @ basis  # [inputs, c]
        at_target = e[np.arange(len(e)), target[lo:lo + chunk]]
        out[lo:lo + chunk] = np.abs(at_target[:, None] - e).max(1)
    ops(n * p * (2 * len(basis) + 3))
    return out
