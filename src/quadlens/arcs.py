"""Sums over arcs of neuron phases, compiled: the inner loop of the linear bound tiers (docs/bounds.md §3).

A cluster's neurons are sorted by phase φ. For an input (a, b), the neurons whose normalised ideal
pre-activation x = κ + 2A cos θ + 2B cos 2θ (θ = ωk(a+b)/2 + φ, A = cos(δ/2), B = β cos δ) lies in a
level set ``lower < x ≤ upper`` form at most five pieces in X = cos θ, so at most ten arcs of φ (the two arcs
of a piece that reaches X = ±1 meet there and are joined into one); sums over
them are differences of prefix sums over the phase list doubled to [−π, 3π), so that an arc past π is one
index range. The per-row tables (residual and band prefix sums, range-maximum tables: side b's p of them per
cluster, side a's built by each row a as it starts) hold the list once, and read such a range in two parts
(``unwrapped``). Per input this is O(1)
expected work, so the whole pass is linear in the parameter count. What depends on a − b alone (A, B,
the on-set {x > 0} and the roots of x = 0, which the bands share) is computed once per difference, and
the input's shift only moves those arcs; each band needs only its own roots at ±τ.

The roots are those of ``quadlens.lens.roots_in_unit_interval``; an angle's index is numpy's
``searchsorted`` (side='left'), found from a uniform grid of buckets and a short scan; empty arcs are
skipped. The sums are real: output weights with each phasor's real and imaginary parts apart, against
five real parts of r (κ + Q(θ)). Each row a runs in phases over all b, so that the reads from b's table
rows, which lie far apart in memory, overlap; every cluster's tables reuse one ``Workspace``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

SAFETY = 1e-8  # relative and absolute slack on every residual threshold (docs/bounds.md §6)
CHORD_FLOOR = 0.01  # the band's chord divides by at least this threshold, so its rounding stays far below SAFETY
MAX_ARCS = 10


@njit(cache=True, inline="always")
def _inflate(x: float) -> float:
    return x * (1 + SAFETY) + SAFETY


@njit(cache=True)
def _roots(kappa: float, A: float, B: float, out: np.ndarray, start: int) -> None:
    """The two roots in [−1, 1] of 4B X² + 2A X + (κ − 2B), −1 where there is none, into out[start:start+2]."""
    a2, a1, a0 = 4 * B, 2 * A, kappa - 2 * B
    if abs(a2) < 1e-12 * (abs(a1) + abs(a0) + 1e-300):
        r1, r2 = (-a0 / a1 if a1 != 0 else np.nan), np.nan
    else:
        disc = a1 * a1 - 4 * a2 * a0
        if disc < 0:
            r1, r2 = np.nan, np.nan
        else:
            root = np.sqrt(disc)
            r1, r2 = (-a1 - root) / (2 * a2), (-a1 + root) / (2 * a2)
    for j, r in enumerate((r1, r2)):
        out[start + j] = -1.0 if (np.isnan(r) or np.isinf(r)) else min(max(r, -1.0), 1.0)


@njit(cache=True)
def phase_buckets(phase2: np.ndarray) -> np.ndarray:
    """For a uniform grid of 2·len(phase2) cells over [−π, 3π]: the first index at or after each grid point."""
    cells = max(2 * len(phase2), 1)
    return np.searchsorted(phase2, -np.pi + 4 * np.pi * np.arange(cells + 1) / cells)


@njit(cache=True, inline="always")
def _index(phase2: np.ndarray, buckets: np.ndarray, x: float) -> int:
    """np.searchsorted(phase2, x): the first index whose phase is ≥ x (grid points below x are skipped)."""
    cells = len(buckets) - 1
    cell = min(max(int((x + np.pi) * (cells * (0.25 / np.pi))) - 1, 0), cells)  # a cell at or before x's
    j = buckets[cell]
    while j < len(phase2) and phase2[j] < x:
        j += 1
    return j


@njit(cache=True, inline="always")
def _pieces(kappa: float, A: float, B: float, lower: float, upper: float, cuts: np.ndarray, angles: np.ndarray,
            m: int, starts: np.ndarray, lengths: np.ndarray) -> int:
    """The arcs between the sorted cut values X in cuts[0..m] where lower < x ≤ upper; ``angles`` holds arccos of
    the cuts where already known (NaN elsewhere). Returns how many were written to starts and lengths."""
    for s in range(1, m + 1):  # insertion sort of at most six values, their angles carried along
        value, angle, j = cuts[s], angles[s], s
        while j > 0 and cuts[j - 1] > value:
            cuts[j], angles[j] = cuts[j - 1], angles[j - 1]
            j -= 1
        cuts[j], angles[j] = value, angle
    count = 0
    for s in range(m):
        x_lo, x_hi = cuts[s], cuts[s + 1]
        if not x_hi > x_lo:
            continue
        mid = (x_lo + x_hi) / 2
        value = kappa + 2 * A * mid + 2 * B * (2 * mid * mid - 1)
        if not (value > lower and value <= upper):
            continue
        if np.isnan(angles[s + 1]):
            angles[s + 1] = np.arccos(x_hi)
        if np.isnan(angles[s]):
            angles[s] = np.arccos(x_lo)
        alpha, beta = angles[s + 1], angles[s]
        if x_hi == 1.0:  # the two arcs meet at θ = 0 (the whole circle if x_lo = −1 too): one arc, half the lookups
            starts[count], lengths[count] = -beta, 2 * beta
            count += 1
        elif x_lo == -1.0:  # they meet at θ = π
            starts[count], lengths[count] = alpha, 2 * (np.pi - alpha)
            count += 1
        else:
            starts[count], starts[count + 1] = alpha, -beta
            lengths[count], lengths[count + 1] = beta - alpha, beta - alpha
            count += 2
    return count


@njit(cache=True)
def level_pieces(kappa: float, A: float, B: float, lower: float, upper: float, cuts: np.ndarray,
                 starts: np.ndarray, lengths: np.ndarray) -> int:
    """The level set {lower < x ≤ upper} (upper = inf: no limit) as arcs of φ + shift: their starts and lengths.

    Returns how many were written (at most ``MAX_ARCS``); ``cuts`` is scratch space for twelve values.
    """
    angles = cuts[6:]
    angles[:] = np.nan
    cuts[0] = -1.0
    _roots(kappa - lower, A, B, cuts, 1)
    if np.isinf(upper):
        cuts[3] = 1.0
        m = 3
    else:
        _roots(kappa - upper, A, B, cuts, 3)
        cuts[5] = 1.0
        m = 5
    return _pieces(kappa, A, B, lower, upper, cuts, angles, m, starts, lengths)


@njit(cache=True, inline="always")
def band_pieces(kappa: float, A: float, B: float, tau: float, off: bool, zero_roots: np.ndarray,
                zero_angles: np.ndarray, cuts: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> int:
    """``level_pieces`` for the band {0 < x ≤ τ} (or {−τ < x ≤ 0} when ``off``), given the roots of x = 0 and
    their arccos (the on-set's, tabulated per difference): only the roots at ±τ are computed."""
    angles = cuts[6:]
    angles[:] = np.nan
    cuts[0], cuts[5] = -1.0, 1.0
    lower, upper = (-tau, 0.0) if off else (0.0, tau)
    first = 3 if off else 1  # the x = 0 roots take the other two places
    cuts[first], cuts[first + 1] = zero_roots[0], zero_roots[1]
    angles[first], angles[first + 1] = zero_angles[0], zero_angles[1]
    _roots(kappa - (lower if off else upper), A, B, cuts, 4 - first)
    return _pieces(kappa, A, B, lower, upper, cuts, angles, 5, starts, lengths)


@njit(cache=True, inline="always")
def shifted_arcs(starts: np.ndarray, lengths: np.ndarray, count: int, shift: float, phase2: np.ndarray,
                 buckets: np.ndarray, i1: np.ndarray, i2: np.ndarray) -> int:
    """The arcs moved by −shift as index ranges [i1, i2) of the doubled phase list; returns how many are non-empty."""
    written = 0
    for q in range(count):
        lo = starts[q] - shift + np.pi  # into [−π, π), by floor rather than np.mod's slower exact fmod
        lo -= 2 * np.pi * np.floor(lo * (0.5 / np.pi)) + np.pi
        j1 = _index(phase2, buckets, lo)
        j2 = _index(phase2, buckets, lo + lengths[q])
        if j2 > j1:
            i1[written], i2[written] = j1, j2
            written += 1
    return written


@njit(cache=True)
def on_set_pieces(kappa: float, beta: float, omega_k: float, p: int):
    """Per difference a − b (index a − b + p − 1), which alone they depend on: the waveform's A and B, the
    pieces of its on-set {x > 0}, and the roots of x = 0 with their arccos, which bound the bands too.
    Returns (A, B, starts, lengths, counts, zero_roots, zero_angles)."""
    A, B = np.empty(2 * p - 1), np.empty(2 * p - 1)
    starts, lengths = np.empty((2 * p - 1, MAX_ARCS)), np.empty((2 * p - 1, MAX_ARCS))
    counts, cuts = np.empty(2 * p - 1, np.int64), np.empty(12)
    zero_roots, zero_angles = np.empty((2 * p - 1, 2)), np.empty((2 * p - 1, 2))
    for index in range(2 * p - 1):
        delta = omega_k * (index - (p - 1))
        A[index], B[index] = np.cos(delta / 2), beta * np.cos(delta)
        counts[index] = level_pieces(kappa, A[index], B[index], 0.0, np.inf, cuts, starts[index], lengths[index])
        _roots(kappa, A[index], B[index], zero_roots[index], 0)
        zero_angles[index, 0], zero_angles[index, 1] = np.arccos(zero_roots[index, 0]), np.arccos(zero_roots[index, 1])
    return A, B, starts, lengths, counts, zero_roots, zero_angles


@njit(cache=True, inline="always")
def unwrapped(j1: int, j2: int, n: int) -> tuple[int, int, int]:
    """A range [j1, j2) of the doubled neuron list (j2 − j1 ≤ n) as ranges of the list itself: (start, end,
    wrapped) for [start, end) ∪ [0, wrapped), the second empty (wrapped = 0) unless the range passes n."""
    if j1 >= n:
        return j1 - n, j2 - n, 0
    if j2 <= n:
        return j1, j2, 0
    return j1, n, j2 - n


@njit(cache=True, inline="always")
def _table_max(table: np.ndarray, row: int, j1: int, j2: int) -> float:
    level = 0
    while (2 << level) <= j2 - j1:
        level += 1
    return max(table[level, row, j1], table[level, row, j2 - (1 << level)])


@njit(cache=True)
def range_max(table: np.ndarray, row: int, j1: int, j2: int) -> float:
    """max of the row's values over the doubled list's range [j1, j2) (j2 > j1, j2 − j1 ≤ n) from a sparse table
    ``[L, rows, n]`` over the list itself (``range_max_table``)."""
    start, end, wrapped = unwrapped(j1, j2, table.shape[2])
    best = _table_max(table, row, start, end)
    return max(best, _table_max(table, row, 0, wrapped)) if wrapped else best


@njit(cache=True, inline="always")
def _add_arcs(total: np.ndarray, ideal_prefix: np.ndarray, i1: np.ndarray, i2: np.ndarray, count: int,
              c0: float, c1: float, c2: float, c3: float, c4: float) -> None:
    """total += Σ over the arcs [i1, i2) of the ideal activation's five parts times c0..c4, per output weight."""
    for q in range(count):
        upper, lower = ideal_prefix[i2[q]], ideal_prefix[i1[q]]
        for w in range(len(total)):
            total[w] += (c0 * (upper[0, w] - lower[0, w]) + c1 * (upper[1, w] - lower[1, w])
                         + c2 * (upper[2, w] - lower[2, w]) + c3 * (upper[3, w] - lower[3, w])
                         + c4 * (upper[4, w] - lower[4, w]))


@njit(cache=True, inline="always")
def _add_row_sums(total: np.ndarray, prefix_row: np.ndarray, i1: np.ndarray, i2: np.ndarray, count: int) -> None:
    """total += Σ over the arcs [i1, i2) of one row's per-neuron values (``prefix_row`` ``[n+1, W]``: prefix sums
    over the neuron list once; a wrapped arc adds its part from the start, row 0 being zero)."""
    for q in range(count):
        start, end, wrapped = unwrapped(i1[q], i2[q], len(prefix_row) - 1)
        upper, lower, rest = prefix_row[end], prefix_row[start], prefix_row[wrapped]
        for w in range(len(total)):
            total[w] += upper[w] - lower[w] + rest[w]


@njit(cache=True)
def _row_bands(a: int, kappa: float, omega_k: float, shift_tables, band_a: np.ndarray, band_prefix_b: np.ndarray,
               share_a: np.ndarray, share_tables_b: np.ndarray, share_max: np.ndarray, iterations: int,
               band: np.ndarray, ops: np.ndarray) -> None:
    """The band term of every input (a, b) of row a into ``band[b]``: per sign, the band {0 < x ≤ τ} (or
    {−τ < x ≤ 0}), τ narrowed up to ``iterations`` times to the largest residual share inside it. Row a's band
    prefix sums ``band_a`` ``[2, n+1, 5]`` and share tables ``share_a`` ``[2, L, 1, n]`` are its own; side b's
    are tables of every row (``arc_sums``)."""
    phase2, buckets, turn, A_of, B_of, _, _, _, zero_roots, zero_angles = shift_tables
    p = len(band)
    i1, i2, count = np.empty((p, MAX_ARCS), np.int64), np.empty((p, MAX_ARCS), np.int64), np.empty(p, np.int64)
    tau, active = np.empty(p), np.empty(p, np.bool_)
    starts, lengths, cuts, sums = np.empty(MAX_ARCS), np.empty(MAX_ARCS), np.empty(12), np.empty(5)
    band[:] = 0.0
    for sign in range(2):  # 0: on-band {0 < x ≤ τ⁻}, 1: off-band {−τ⁺ < x ≤ 0}
        for b in range(p):
            tau[b], active[b] = _inflate(share_max[sign, 0, a] + share_max[sign, 1, b]), True
        for step in range(iterations + 1):
            for b in range(p):  # the band's arcs at the current τ
                if not active[b]:
                    continue
                difference = a - b + p - 1
                pieces = band_pieces(kappa, A_of[difference], B_of[difference], tau[b], sign == 1,
                                     zero_roots[difference], zero_angles[difference], cuts, starts, lengths)
                count[b] = shifted_arcs(starts, lengths, pieces, omega_k * (a + b) / 2, phase2, buckets, i1[b], i2[b])
                ops[a] += 160
                active[b] = step < iterations and count[b] > 0
            for b in range(p):  # narrow τ to the largest share inside the band; where nothing is gained, it stands
                if not active[b]:
                    continue
                max_a, max_b = 0.0, 0.0
                for q in range(count[b]):
                    max_a = max(max_a, range_max(share_a[sign], 0, i1[b, q], i2[b, q]))
                    max_b = max(max_b, range_max(share_tables_b[sign], b, i1[b, q], i2[b, q]))
                ops[a] += count[b] * 16 + 6
                narrowed = _inflate(max_a + max_b)
                active[b] = narrowed < tau[b]
                if active[b]:
                    tau[b] = narrowed
        for b in range(p):  # each neuron's correction, at most its share, shrinks along the chord (1 − |x|/τ)
            sums[:] = 0.0
            _add_row_sums(sums, band_a[sign], i1[b], i2[b], count[b])
            _add_row_sums(sums, band_prefix_b[sign, b], i1[b], i2[b], count[b])
            s0, s1, s2, s3, s4 = sums
            difference, cs = a - b + p - 1, turn[a + b]
            A2, B2 = 2 * A_of[difference], 2 * B_of[difference]
            moment = kappa * s0 + A2 * (cs[0] * s1 + cs[1] * s2) + B2 * (cs[2] * s3 + cs[3] * s4)  # Σ weight·x
            moment /= max(tau[b], CHORD_FLOOR)
            band[b] += min(s0 - moment if sign == 0 else s0 + moment, s0)
            ops[a] += count[b] * 20 + 16


@njit(cache=True)
def shift_tables(phase: np.ndarray, kappa: float, beta: float, omega_k: float, p: int):
    """What every input's arcs are built from: the doubled phase list and its buckets, the per-difference tables
    of ``on_set_pieces``, and per a + b the shift u's cos u, −sin u, cos 2u, −sin 2u."""
    phase2 = np.concatenate((phase, phase + 2 * np.pi))
    turn = np.empty((2 * p - 1, 4))
    for a_plus_b in range(2 * p - 1):
        shift = omega_k * a_plus_b / 2
        turn[a_plus_b] = np.cos(shift), -np.sin(shift), np.cos(2 * shift), -np.sin(2 * shift)
    return (phase2, phase_buckets(phase2), turn) + on_set_pieces(kappa, beta, omega_k, p)


@njit(cache=True, inline="always")
def _on_set_arcs(a: int, b: int, omega_k: float, shift_tables, i1: np.ndarray, i2: np.ndarray) -> int:
    """Input (a, b)'s on-set {x > 0} as index ranges [i1, i2) of the doubled phase list; returns how many."""
    phase2, buckets, turn, _, _, on_starts, on_lengths, on_counts, _, _ = shift_tables
    difference = a - b + (len(turn) - 1) // 2
    return shifted_arcs(on_starts[difference], on_lengths[difference], on_counts[difference],
                        omega_k * (a + b) / 2, phase2, buckets, i1, i2)


@njit(cache=True, inline="always")
def _ideal_at(a: int, b: int, kappa: float, omega_k: float, shift_tables, ideal_prefix: np.ndarray,
              total: np.ndarray, i1: np.ndarray, i2: np.ndarray) -> int:
    """Input (a, b)'s on-set arcs into i1, i2 and its ideal activations' sums into ``total``; returns the arcs."""
    _, _, turn, A_of, B_of, _, _, _, _, _ = shift_tables
    difference, a_plus_b = a - b + (len(turn) - 1) // 2, a + b
    count = _on_set_arcs(a, b, omega_k, shift_tables, i1, i2)
    # r (κ + 2A cos θ + 2B cos 2θ), θ = u + φ with u the shift, against ideal_prefix's five parts
    A2, B2, cs = 2 * A_of[difference], 2 * B_of[difference], turn[a_plus_b]
    _add_arcs(total, ideal_prefix, i1, i2, count, kappa, A2 * cs[0], A2 * cs[1], B2 * cs[2], B2 * cs[3])
    return count


@njit(cache=True, parallel=True)
def arc_sums(phase: np.ndarray, kappa: float, beta: float, omega_k: float, ideal_prefix: np.ndarray,
             eps_a: np.ndarray, weights: np.ndarray, residual_prefix_b: np.ndarray, band_weights: np.ndarray,
             band_prefix_b: np.ndarray, shares_a: np.ndarray, share_tables_b: np.ndarray, share_max: np.ndarray,
             iterations: int, found: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Fill ``found[W, a, b]`` and ``band[a, b]`` for one cluster with sign patterns; returns the operations
    performed per row a.

    ideal_prefix ``[2n+1, 5, W]``: prefix sums of (r, r cos φ, r sin φ, r cos 2φ, r sin 2φ) times v, real;
    residual_prefix_b ``[p, n+1, W]``: per row b, prefix sums of ε_b v (``row_prefix``);
    band_prefix_b ``[2, p, n+1, 5]``: for sign (−, +) and row b, prefix sums of relu(∓ε_b) × cost times
    (1, cos φ, sin φ, cos 2φ, sin 2φ) (``band_weights`` ``[2, n, 5]``), the last four for the band's chord;
    share_tables_b ``[2, L, p, n]``: sparse tables of the shares relu(∓ε_b)/r (``range_max_table``);
    these per-row tables hold the neuron list once, and a wrapped arc reads its two parts (``unwrapped``);
    side a's, from ε_a ``[p, n]``, the output weights v ``[n, W]`` and its shares ``[2, p, n]``, are built row
    by row here, each where it is used (half the tables' memory); share_max ``[2, 2, p]``.
    """
    W, p = found.shape[0], found.shape[1]
    n, levels = weights.shape[0], share_tables_b.shape[1]
    tables = shift_tables(phase, kappa, beta, omega_k, p)
    ops = np.zeros(p, np.int64)
    for a in prange(p):
        residual_a, band_a = np.empty((n + 1, W)), np.empty((2, n + 1, 5))
        share_a = np.empty((2, levels, 1, n), share_tables_b.dtype)
        prefix_row(eps_a[a], weights, residual_a)
        for sign in range(2):
            prefix_row(np.maximum((2 * sign - 1) * eps_a[a], 0.0), band_weights[sign], band_a[sign])
            range_max_row(shares_a[sign, a], share_a[sign], 0)
        # each phase runs over the whole row b = 0..p−1, so that the b-side table reads, whose rows are far apart
        # in memory, are issued many at a time instead of one input's at a time
        total = np.zeros((p, W))
        i1, i2, count = np.empty((p, MAX_ARCS), np.int64), np.empty((p, MAX_ARCS), np.int64), np.empty(p, np.int64)
        for b in range(p):
            count[b] = _ideal_at(a, b, kappa, omega_k, tables, ideal_prefix, total[b], i1[b], i2[b])
            ops[a] += 120 + count[b] * W * 15
        for b in range(p):
            _add_row_sums(total[b], residual_a, i1[b], i2[b], count[b])
        for b in range(p):
            _add_row_sums(total[b], residual_prefix_b[b], i1[b], i2[b], count[b])
            ops[a] += count[b] * W * 4
        _row_bands(a, kappa, omega_k, tables, band_a, band_prefix_b, share_a, share_tables_b, share_max, iterations,
                   band[a], ops)
        for w in range(W):
            for b in range(p):
                found[w, a, b] = total[b, w]
    return ops


@njit(cache=True, parallel=True)
def flips(tables, omega_k: float, from_a: np.ndarray, from_b: np.ndarray, a: np.ndarray, b: np.ndarray,
          out: np.ndarray) -> None:
    """out[q, i] = relu(z_i) − on_i·z_i at input q = (a[q], b[q]), z_i = from_a[a, i] + from_b[b, i] the neuron's
    pre-activation and on_i whether ``arc_sums`` puts it on the ideal on-set there (the same roots and arcs, from
    the group's ``shift_tables``): what the exact activations add to the arc sums, which take Σ_{on} z_i v_i.
    Nonzero only where the residual flips the neuron's sign. ``from_a`` ``[p, n]`` and ``from_b`` in the group's
    phase order."""
    n = from_a.shape[1]
    for q in prange(len(a)):
        x, y = a[q], b[q]
        i1, i2 = np.empty(MAX_ARCS, np.int64), np.empty(MAX_ARCS, np.int64)
        for i in range(n):
            out[q, i] = max(from_a[x, i] + from_b[y, i], 0.0)
        for arc in range(_on_set_arcs(x, y, omega_k, tables, i1, i2)):
            for j in range(i1[arc], i2[arc]):  # indices into the doubled phase list
                i = j % n
                out[q, i] -= from_a[x, i] + from_b[y, i]


@njit(cache=True, parallel=True)
def ideal_sums(phase: np.ndarray, kappa: float, beta: float, omega_k: float, ideal_prefix: np.ndarray,
               found: np.ndarray) -> np.ndarray:
    """Fill ``found[W, a, b]`` with the ideal activations' sums over the on-set {x > 0} alone (the Lipschitz
    tier); returns the operations performed per row a. They depend on a and b symmetrically (through
    cos(δ/2), cos δ and a + b), so only b ≥ a is computed and the rest copied across the diagonal."""
    W, p = found.shape[0], found.shape[1]
    tables = shift_tables(phase, kappa, beta, omega_k, p)
    ops = np.zeros(p, np.int64)
    for i in prange(p):
        a = i // 2 if i % 2 == 0 else p - 1 - i // 2  # long and short rows in turn, so the threads share evenly
        total = np.zeros((p - a, W))
        i1, i2 = np.empty(MAX_ARCS, np.int64), np.empty(MAX_ARCS, np.int64)
        for b in range(a, p):
            count = _ideal_at(a, b, kappa, omega_k, tables, ideal_prefix, total[b - a], i1, i2)
            ops[a] += 120 + count * W * 15
        for w in range(W):
            for b in range(a, p):
                found[w, a, b] = total[b - a, w]
    tile = 32
    for w in prange(W):  # the lower triangle from the upper, tile by tile
        for a0 in range(0, p, tile):
            for b0 in range(a0, p, tile):
                for a in range(a0, min(a0 + tile, p)):
                    for b in range(max(b0, a + 1), min(b0 + tile, p)):
                        found[w, b, a] = found[w, a, b]
    return ops


SQUARE_PARTS = 9  # r², then r² cos mφ and r² sin mφ for m = 1 … 4


def square_prefix(phase: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Prefix sums over the doubled phase list of r² (1, cos φ, sin φ, …, cos 4φ, sin 4φ): ``[2n+1, 9]``,
    what ``square_sums`` reads."""
    parts = [np.ones_like(phase)] + [f(m * phase) for m in range(1, 5) for f in (np.cos, np.sin)]
    return prefix(r[:, None] ** 2 * np.stack(parts, axis=1))


@njit(cache=True, parallel=True)
def square_sums(phase: np.ndarray, kappa: float, beta: float, omega_k: float, squares: np.ndarray,
                out: np.ndarray) -> np.ndarray:
    """Fill ``out[a, b]`` with Σ over the on-set {x > 0} of ĥ_i² = r_i² x_i², the ideal activations' squared norm
    (docs/bounds.md §1, the remainder by Cauchy–Schwarz), from ``squares`` (``square_prefix``); returns the
    operations performed per row a.

    x² = P0 + P1 cos θ + P2 cos 2θ + P3 cos 3θ + P4 cos 4θ with P0 = κ² + 2A² + 2B², P1 = 4A(κ + B),
    P2 = 2A² + 4κB, P3 = 4AB, P4 = 2B², and cos mθ = cos mu cos mφ − sin mu sin mφ for θ = u + φ.
    """
    p = out.shape[0]
    tables = shift_tables(phase, kappa, beta, omega_k, p)
    _, _, turn, A_of, B_of, _, _, _, _, _ = tables
    ops = np.zeros(p, np.int64)
    for a in prange(p):
        i1, i2, c = np.empty(MAX_ARCS, np.int64), np.empty(MAX_ARCS, np.int64), np.empty(SQUARE_PARTS)
        for b in range(p):
            count = _on_set_arcs(a, b, omega_k, tables, i1, i2)
            A, B = A_of[a - b + p - 1], B_of[a - b + p - 1]
            cos1, sin1, cos2, sin2 = turn[a + b, 0], -turn[a + b, 1], turn[a + b, 2], -turn[a + b, 3]
            harmonics = (4 * A * (kappa + B), 2 * A * A + 4 * kappa * B, 4 * A * B, 2 * B * B)
            cosines = (cos1, cos2, cos2 * cos1 - sin2 * sin1, 2 * cos2 * cos2 - 1)
            sines = (sin1, sin2, sin2 * cos1 + cos2 * sin1, 2 * sin2 * cos2)
            c[0] = kappa * kappa + 2 * A * A + 2 * B * B
            for m in range(4):
                c[1 + 2 * m], c[2 + 2 * m] = harmonics[m] * cosines[m], -harmonics[m] * sines[m]
            total = 0.0
            for q in range(count):
                upper, lower = squares[i2[q]], squares[i1[q]]
                for part in range(SQUARE_PARTS):
                    total += c[part] * (upper[part] - lower[part])
            out[a, b] = total
            ops[a] += 60 + count * SQUARE_PARTS * 3
    return ops


@njit(cache=True, parallel=True)
def range_max_table(values: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` ``[table_levels(n), p, n]`` with the sparse table over the neuron list of ``values`` ``[p, n]``
    (≥ 0), O(p·n·log n): level l holds the maximum over [j, j + 2^l) (0 past the end)."""
    for row in prange(values.shape[0]):
        range_max_row(values[row], out, row)


@njit(cache=True, inline="always")
def range_max_row(values: np.ndarray, out: np.ndarray, row: int) -> None:
    """Row ``row`` of ``range_max_table``'s ``out`` from that row's ``values`` ``[n]``."""
    n = len(values)
    for j in range(n):
        value = values[j]
        stored = out.dtype.type(value)  # a narrower table rounds up, so that its maxima stay upper bounds
        out[0, row, j] = stored if np.float64(stored) >= value else np.nextafter(stored, out.dtype.type(np.inf))
    for level in range(1, out.shape[0]):
        half = 1 << (level - 1)
        for j in range(max(n - half, 0)):
            out[level, row, j] = max(out[level - 1, row, j], out[level - 1, row, j + half])
        for j in range(max(n - half, 0), n):
            out[level, row, j] = 0.0


def table_levels(n: int) -> int:
    return int(np.log2(max(n, 1))) + 1


def touched(shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
    """A zeroed array whose pages this one thread has already written. Fresh memory first written by the
    compiled kernels' threads at once was measured 3 to 8 times slower to fault in (docs/bounds-record.md, Speed)."""
    out = np.zeros(shape, dtype)
    out.fill(0)
    return out


class Workspace:
    """Memory that every cluster's tables reuse: fresh memory costs page faults, so each named buffer is
    allocated and touched once, at the largest size asked for, and handed out again reshaped. It is not
    cleared between uses: whoever asks for an array writes every entry of it."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
        size = int(np.prod(shape))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = self._buffers[name] = touched((size,), dtype)
        return buffer[:size].reshape(shape)


def row_prefix(rows: np.ndarray, weights: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Per row r, prefix sums over the neuron list (once: there are p rows) of rows[r, i]·weights[i, w]:
    ``[p, n+1, W]`` (into ``out`` if given), as ``prefix(rows[:, :, None] * weights[None], axis=1)[:, :n + 1]``
    without the temporaries."""
    shape = (rows.shape[0], rows.shape[1] + 1, weights.shape[1])
    out = touched(shape) if out is None else out
    _row_prefix(rows, weights, out)
    return out


@njit(cache=True, parallel=True)
def _row_prefix(rows: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    for r in prange(rows.shape[0]):
        prefix_row(rows[r], weights, out[r])


@njit(cache=True, inline="always")
def prefix_row(row: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """One row of ``row_prefix``: ``out`` ``[n+1, W]`` from ``row`` ``[n]``."""
    W = weights.shape[1]
    for w in range(W):
        out[0, w] = 0.0
    for i in range(len(row)):
        for w in range(W):
            out[i + 1, w] = out[i, w] + row[i] * weights[i, w]


def prefix(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Prefix sums over the doubled neuron list along ``axis``: length 2n + 1 there (sums over wrapped arcs)."""
    values = np.moveaxis(values, axis, 0)
    n = len(values)
    out = np.zeros((2 * n + 1,) + values.shape[1:], values.dtype)
    np.cumsum(values, axis=0, out=out[1:n + 1])
    np.add(out[n], out[1:n + 1], out=out[n + 1:])
    return np.moveaxis(out, 0, axis)
