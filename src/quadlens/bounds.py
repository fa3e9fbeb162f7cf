"""Sound bounds on how far the model strays from its quadrature explanation (THEORY §7, docs/bounds.md).

The explanation is L3, the integral: per cluster ``(W_k/2) C(κ_k, β_k, δ) cos(ωk(a+b−c) − ψ0_k)``, plus
the exact direct path. For every input a bound B(a, b) ≥ max_c |err(a,b,a+b) − err(a,b,c)| is computed,
with err = model − explanation; an input is certified when the explanation's margin exceeds B.

Tiers (costs counted in arithmetic operations as they are performed):
  lipschitz  linear   the decomposition below, every residual taken by relu's Lipschitz constant
  arcs       linear   the same, with sign patterns: where the cluster's waveform is surely above or below
                      the kink, the residual enters exactly; only a band around the kink is Lipschitz
  quadratic  O(p²m)   exact hidden activations; only the maximum over c is bounded
  quadratic_exact_c   the same with the tracked phasors' maximum over c taken exactly (O(p³F) more)
  brute force O(p³m)  the truth

Decomposition (exact for any explanation parameters, so soundness never depends on the fit): neuron i of
cluster k has ``pre_i = r_i (κ_k + Q(θ_i; δ)) + ε_a[a, i] + ε_b[b, i]`` with Q = 2A cos θ + 2B cos 2θ,
A = cos(δ/2), B = β_k cos δ; its output row is ``W_L[i, c] = μ_i + Σ_f Re(γ_i(f) e^{iωfc}) + ρ_i(c)`` over
the cluster's tracked frequencies f (the key frequency and its largest residual ones).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .clusters import Cluster, lens_parameters
from .ladder import integral_logits, margins, targets
from .lens import cluster_amplitude, roots_in_unit_interval
from .tables import SeparableTables

SAFETY = 1e-8  # relative and absolute slack added to every bound, far above float64 rounding (~1e-12)
TRACKED_EXTRA = 10  # residual output frequencies tracked per cluster besides the key frequency


class Ops:
    """Counts arithmetic operations as they are performed (elementwise op = 1 per element, matmul = 2nkm)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, n: int | float) -> None:
        self.count += int(n)


@dataclass
class Tier:
    """One tier's per-input bound and explanation margin (``[p, p]``), its cost and time."""

    name: str
    cost: str
    bound: np.ndarray
    margin: np.ndarray
    ops: int
    seconds: float

    @property
    def certified(self) -> np.ndarray:
        return self.margin > self.bound


# ---------------------------------------------------------------- the explanation and its margins

def explanation_phasors(cluster: Cluster, p: int) -> tuple[np.ndarray, dict]:
    """The explanation's key-frequency phasor per input ``[p, p]`` (complex) and the cluster's lens parameters."""
    lens = lens_parameters(cluster)
    t = np.arange(p)
    amplitude = cluster_amplitude(p, cluster.frequency, cluster.total_weight, lens["kappa"], lens["beta"])
    omega_k = 2 * np.pi * cluster.frequency / p
    return amplitude[_difference_index(p)] * np.exp(1j * (lens["psi0"] - omega_k * (t[:, None] + t[None, :]))), lens


def explanation_margin_by_difference(clusters: list[Cluster], p: int, ops: Ops) -> np.ndarray:
    """min over c ≠ a+b of the explanation's MLP logit difference, per a − b: ``[p]``, in O(p²K)."""
    j = np.arange(1, p)
    total = np.zeros((p, p - 1))
    for cluster in clusters:
        lens = lens_parameters(cluster)
        omega_k = 2 * np.pi * cluster.frequency / p
        amplitude = cluster_amplitude(p, cluster.frequency, cluster.total_weight, lens["kappa"], lens["beta"])
        total += amplitude[:, None] * (np.cos(lens["psi0"]) - np.cos(omega_k * j - lens["psi0"]))[None, :]
        ops(30 * p + 4 * p * (p - 1))
    return total.min(1)


def _difference_index(p: int) -> np.ndarray:
    t = np.arange(p)
    return (t[:, None] - t[None, :]) % p


def separable_margin(tables: SeparableTables, clusters: list[Cluster], ops: Ops) -> np.ndarray:
    """A lower bound on the explanation's margin with the direct path, in O(p²K): MLP part per a − b, plus
    D_a[a, a+b] − max_c D_a[a, c] and the same for D_b (the direct path's worst case split in two)."""
    p = tables.p
    mlp = explanation_margin_by_difference(clusters, p, ops)[_difference_index(p)]
    y = targets(p)
    rows = np.arange(p)[:, None]
    direct = (tables.D_a[rows, y] - tables.D_a.max(1)[:, None]) + (tables.D_b[rows.T, y] - tables.D_b.max(1)[None, :])
    ops(4 * p * p)
    return mlp + direct


def explanation_rows(tables: SeparableTables, clusters: list[Cluster], rows: slice) -> np.ndarray:
    """L3 logits with the direct path for the inputs with a in ``rows``: ``[len(rows), p, p]``."""
    return integral_logits(tables, clusters, harmonics=True, rows=rows)


def _row_chunks(p: int, per_row: int, chunk_elements: int = 1 << 25):
    step = max(1, chunk_elements // max(per_row, 1))
    return [slice(lo, min(lo + step, p)) for lo in range(0, p, step)]


def exact_margin(tables: SeparableTables, clusters: list[Cluster], ops: Ops,
                 chunk_elements: int = 1 << 25) -> np.ndarray:
    """The explanation's margin with the exact direct path, O(p³K), in chunks of rows."""
    p = tables.p
    ops(p ** 3 * (6 * len(clusters) + 3))
    return np.concatenate([margins(explanation_rows(tables, clusters, rows), rows)
                           for rows in _row_chunks(p, p * p, chunk_elements)])


# ---------------------------------------------------------------- ground truth

def brute_force(tables: SeparableTables, clusters: list[Cluster], device: str | None = None,
                chunk_elements: int = 1 << 25) -> tuple[np.ndarray, np.ndarray, int, float]:
    """True max_c |err(a,b,a+b) − err(a,b,c)| and the model's margin, ``[p, p]`` each, float64.

    Evaluates the model on every input and output (O(p³·d_mlp)), on CUDA when available.
    Returns (truth, model_margin, ops, seconds).
    """
    start = time.perf_counter()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    p, m = tables.p, tables.d_mlp
    as_t = lambda x: torch.as_tensor(x, dtype=torch.float64, device=dev)  # noqa: E731
    F_a, F_b, b_in, W_L = as_t(tables.F_a), as_t(tables.F_b), as_t(tables.b_in), as_t(tables.W_L)
    y = torch.as_tensor(targets(p), device=dev)
    truth = torch.empty(p, p, dtype=torch.float64, device=dev)
    model_margin = torch.empty_like(truth)
    for rows in _row_chunks(p, p * max(m, p), chunk_elements):
        hidden = torch.relu(F_a[rows, None, :] + F_b[None, :, :] + b_in)
        mlp = hidden @ W_L
        direct = as_t(tables.D_a[rows][:, None, :] + tables.D_b[None, :, :])
        err = mlp + direct - as_t(explanation_rows(tables, clusters, rows))
        target = y[rows, :, None]
        truth[rows] = (err.gather(-1, target) - err).abs().amax(-1)
        logits = mlp + direct
        correct = logits.gather(-1, target)
        model_margin[rows] = (correct - logits.scatter(-1, target, -torch.inf)).amin(-1)
    ops = 2 * p * p * m * p + 4 * p * p * m + 6 * p ** 3
    return truth.cpu().numpy(), model_margin.cpu().numpy(), ops, time.perf_counter() - start


# ---------------------------------------------------------------- the shared decomposition

def _dft_coefficients(rows: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """γ(f) with row(c) = mean + Σ_f Re(γ(f) e^{iωfc}) + rest: ``[n, F]`` complex."""
    p = rows.shape[1]
    c = np.arange(p)
    return 2 / p * rows @ np.exp(-2j * np.pi * np.outer(c, frequencies) / p)


def _reconstruct(coefficients: np.ndarray, frequencies: np.ndarray, p: int) -> np.ndarray:
    c = np.arange(p)
    return np.real(coefficients @ np.exp(2j * np.pi * np.outer(frequencies, c) / p))


@dataclass
class ClusterTerms:
    """A cluster's neurons in phase order, with everything the bounds read about them."""

    cluster: Cluster
    frequency: int
    phase: np.ndarray  # φ_i sorted, in [−π, π)
    r: np.ndarray
    kappa: float
    beta: float
    eps_a: np.ndarray  # [p, n]
    eps_b: np.ndarray  # [p, n]
    tau_a: np.ndarray  # [p] max_i |ε_a[a, i]| / r_i, inflated for rounding
    tau_b: np.ndarray  # [p] max_i |ε_b[b, i]| / r_i: |η_i(a, b)| ≤ r_i (τ_a[a] + τ_b[b])
    tracked: np.ndarray  # this cluster's tracked output frequencies (key first)
    gamma: np.ndarray  # [n, F] complex output coefficients at the tracked frequencies (all clusters' F)
    remainder_span: np.ndarray  # [n] ptp of the output row beyond the tracked frequencies
    span: np.ndarray  # [n] ptp of the whole output row: the most one unit of |h − ĥ| moves a logit difference
    neurons: np.ndarray  # model neuron indices, in phase order


@dataclass
class Decomposition:
    clusters: list[ClusterTerms]
    frequencies: np.ndarray  # every tracked frequency (the union over clusters)
    target_phasors: dict[int, np.ndarray]  # explanation phasor per key frequency, [p, p]
    loose: np.ndarray  # neurons outside every cluster
    loose_span: np.ndarray


def decompose(tables: SeparableTables, clusters: list[Cluster], ops: Ops,
              tracked_extra: int = TRACKED_EXTRA) -> Decomposition:
    """Split every cluster neuron into waveform + residuals and its output into tracked phasors + remainder."""
    p = tables.p
    omega = 2 * np.pi / p
    t = np.arange(p)
    terms, frequencies, targets = [], set(), {}
    clustered = np.zeros(tables.d_mlp, bool)
    for cluster in clusters:
        keep = cluster.r > 1e-9 * max(cluster.r.max(), 1e-300)
        order = np.argsort(np.mod(cluster.phi[keep] + np.pi, 2 * np.pi))
        idx = cluster.neurons[keep][order]
        r, phi = cluster.r[keep][order], np.mod(cluster.phi[keep][order] + np.pi, 2 * np.pi) - np.pi
        clustered[idx] = True
        k = cluster.frequency
        phasor, lens = explanation_phasors(cluster, p)
        targets[k] = targets.get(k, 0) + phasor
        theta = omega * k * t[:, None] + phi[None, :]
        waveform = r * (np.cos(theta) + lens["beta"] * np.cos(2 * theta))
        mean_a, mean_b = tables.F_a[:, idx].mean(0), tables.F_b[:, idx].mean(0)
        eps_a = tables.F_a[:, idx] - mean_a - waveform + (mean_a + mean_b + tables.b_in[idx] - r * lens["kappa"])
        eps_b = tables.F_b[:, idx] - mean_b - waveform
        inflate = lambda x: x * (1 + SAFETY) + SAFETY  # noqa: E731
        tau_a, tau_b = inflate((np.abs(eps_a) / r).max(1)), inflate((np.abs(eps_b) / r).max(1))
        rows = tables.W_L[idx] - tables.W_L[idx].mean(1, keepdims=True)
        residual_energy = np.abs(np.fft.fft(rows - _reconstruct(_dft_coefficients(rows, np.array([k])), np.array([k]), p),
                                            axis=1)[:, 1:(p - 1) // 2 + 1]) ** 2
        extra = [int(f) + 1 for f in np.argsort(-residual_energy.sum(0)) if int(f) + 1 != k][:tracked_extra]
        tracked = np.array([k] + extra)
        gamma = _dft_coefficients(rows, tracked)
        remainder = rows - _reconstruct(gamma, tracked, p)
        ops(p * len(idx) * (20 + 8 * len(tracked)) + 5 * p * len(idx) * np.log2(max(p, 2)))
        frequencies.update(tracked.tolist())
        terms.append(ClusterTerms(cluster, k, phi, r, lens["kappa"], lens["beta"], eps_a, eps_b, tau_a, tau_b, tracked, gamma, np.ptp(remainder, axis=1),
                                  np.ptp(tables.W_L[idx], axis=1), idx))
    loose = np.where(~clustered)[0]
    loose_span = np.ptp(tables.W_L[loose], axis=1)
    ops(3 * p * len(loose))
    freq_list = np.array(sorted(frequencies), dtype=int)
    for term in terms:  # align every cluster's coefficients to the global frequency list
        full = np.zeros((len(term.r), len(freq_list)), complex)
        full[:, np.searchsorted(freq_list, term.tracked)] = term.gamma
        term.gamma = full
    return Decomposition(terms, freq_list, targets, loose, loose_span)


# ---------------------------------------------------------------- arcs: sums over neurons by phase

def _arc_ranges(term: ClusterTerms, threshold: float | np.ndarray, shift: np.ndarray, delta: np.ndarray,
                ops: Ops) -> tuple[np.ndarray, np.ndarray]:
    """Index ranges [i1, i2) into the doubled phase list covering {i : κ + Q(shift + φ_i; δ) > threshold}.

    The set is even in θ; its cos θ-intervals come from the roots of a quadratic. Returns ``[..., 6]`` each.
    """
    A, B = np.cos(delta / 2), term.beta * np.cos(delta)
    kappa = term.kappa - threshold
    x = roots_in_unit_interval(kappa, A, B)
    lo_list, length_list = [], []
    for s in range(3):
        x_lo, x_hi = x[..., s], x[..., s + 1]
        mid = (x_lo + x_hi) / 2
        positive = (kappa + 2 * A * mid + 2 * B * (2 * mid * mid - 1) > 0) & (x_hi > x_lo)
        alpha, beta = np.arccos(x_hi), np.arccos(x_lo)
        length = np.where(positive, beta - alpha, 0.0)
        lo_list += [alpha - shift, -beta - shift]
        length_list += [length, length]
    lo = np.mod(np.stack(lo_list, -1) + np.pi, 2 * np.pi) - np.pi
    length = np.stack(length_list, -1)
    phase2 = np.concatenate([term.phase, term.phase + 2 * np.pi])
    i1 = np.searchsorted(phase2, lo)
    i2 = np.searchsorted(phase2, lo + length)
    ops(lo.size * (40 + 2 * np.log2(max(len(phase2), 2))))
    return i1, i2


def _prefix(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Prefix sums over the doubled neuron list along ``axis``: length 2n + 1 there (sums over wrapped arcs)."""
    doubled = np.concatenate([values, values], axis=axis)
    zero_shape = list(values.shape)
    zero_shape[axis] = 1
    return np.concatenate([np.zeros(zero_shape, values.dtype), np.cumsum(doubled, axis=axis)], axis=axis)


def _arc_sum(prefix: np.ndarray, ranges: tuple[np.ndarray, np.ndarray], rows: np.ndarray | None = None) -> np.ndarray:
    """Σ over a set of arcs: from ``prefix`` ``[2n+1, C]``, or per row ``[p, 2n+1, C]`` indexed by ``rows``."""
    i1, i2 = ranges
    if rows is None:
        return (prefix[i2] - prefix[i1]).sum(-2)
    r = rows[..., None]
    return (prefix[r, i2] - prefix[r, i1]).sum(-2)


HARMONICS = (0, 1, -1, 2, -2)  # e^{ihφ} factors of κ, A e^{±iu}, B e^{±2iu} in r (κ + Q(θ))


def linear_bound(tables: SeparableTables, clusters: list[Cluster], sign_patterns: bool = True,
                 ops: Ops | None = None, tracked_extra: int = TRACKED_EXTRA,
                 chunk_elements: int = 1 << 21, exact_over_c: bool = False) -> np.ndarray:
    """B(a, b) in linear time: exact sums over arcs of phase, Lipschitz only where signs are uncertain.

    ``exact_over_c`` takes the tracked phasors' maximum over c exactly (O(p³·F) more, still linear in d_mlp).
    """
    ops = ops or Ops()
    p = tables.p
    dec = decompose(tables, clusters, ops, tracked_extra)
    t = np.arange(p)
    n_freq = len(dec.frequencies)
    exact = np.zeros((p, p, n_freq), complex)
    remainder, lipschitz = np.zeros((p, p)), np.zeros((p, p))
    for term in dec.clusters:
        n = len(term.r)
        columns = np.searchsorted(dec.frequencies, term.tracked)
        weights = np.concatenate([term.gamma[:, columns], term.remainder_span[:, None]], axis=1)  # [n, W]
        W = weights.shape[1]
        harmonic = term.r[None, :] * np.exp(1j * np.outer(HARMONICS, term.phase))  # [5, n]
        ideal_prefix = _prefix((harmonic[:, :, None] * weights[None]).transpose(1, 0, 2).reshape(n, 5 * W))
        ops(n * 5 * W * 6)
        if sign_patterns:
            residual_prefix = [_prefix(eps[:, :, None] * weights[None], axis=1) for eps in (term.eps_a, term.eps_b)]
            band_prefix = [_prefix((np.abs(eps) * term.span)[:, :, None], axis=1) for eps in (term.eps_a, term.eps_b)]
            ops(p * n * (2 * W * 8 + 8))
        else:
            full_band = [np.abs(eps) @ term.span for eps in (term.eps_a, term.eps_b)]
            ops(4 * p * n)
        omega_k = 2 * np.pi * term.frequency / p
        rows_per_chunk = max(1, chunk_elements // (p * 6 * 5 * W))
        for lo in range(0, p, rows_per_chunk):
            a = t[lo:lo + rows_per_chunk, None].repeat(p, 1)
            b = t[None, :].repeat(len(a), 0)
            shift, delta = omega_k * (a + b) / 2, omega_k * (a - b)
            A, B = np.cos(delta / 2), term.beta * np.cos(delta)
            coefficient = np.stack([np.full(A.shape, term.kappa), A * np.exp(1j * shift), A * np.exp(-1j * shift),
                                    B * np.exp(2j * shift), B * np.exp(-2j * shift)], -1)  # [rows, p, 5]
            on = _arc_ranges(term, 0.0, shift, delta, ops)
            ideal = np.einsum("rph,rphw->rpw", coefficient, _arc_sum(ideal_prefix, on).reshape(*A.shape, 5, W))
            ops(A.size * (6 * 5 * W * 3 + 5 * W * 8 + 40))
            if sign_patterns:
                tau = term.tau_a[a] + term.tau_b[b]
                sure_on = _arc_ranges(term, tau, shift, delta, ops)
                maybe_on = _arc_ranges(term, -tau, shift, delta, ops)
                found = ideal + _arc_sum(residual_prefix[0], sure_on, a) + _arc_sum(residual_prefix[1], sure_on, b)
                band = sum(_arc_sum(prefix, maybe_on, rows)[..., 0] - _arc_sum(prefix, sure_on, rows)[..., 0]
                           for prefix, rows in ((band_prefix[0], a), (band_prefix[1], b)))
                ops(A.size * (6 * W * 2 * 3 * 2 + 6 * 4 * 3 + 4 * W))
            else:
                found = ideal
                band = full_band[0][a] + full_band[1][b]
                ops(2 * A.size)
            exact[lo:lo + len(a), :, columns] += found[..., :-1]
            remainder[lo:lo + len(a)] += np.real(found[..., -1])
            lipschitz[lo:lo + len(a)] += band
    for k, phasor in dec.target_phasors.items():
        exact[..., np.searchsorted(dec.frequencies, k)] -= phasor
    loose = _loose_bound(tables, dec, ops)
    tracked = max_over_c(exact, dec.frequencies, ops) if exact_over_c else 2 * np.abs(exact).sum(-1)
    bound = tracked + remainder + lipschitz + loose
    ops(p * p * (4 * n_freq + 6))
    return bound * (1 + SAFETY) + SAFETY


def _loose_bound(tables: SeparableTables, dec: Decomposition, ops: Ops) -> np.ndarray:
    """Neurons outside every cluster: h_i ≤ relu(F_a + b_in) + relu(F_b), times the span of their output row."""
    idx = dec.loose
    if len(idx) == 0:
        return np.zeros((tables.p, tables.p))
    ua = np.maximum(tables.F_a[:, idx] + tables.b_in[idx], 0) @ dec.loose_span
    ub = np.maximum(tables.F_b[:, idx], 0) @ dec.loose_span
    ops(6 * tables.p * len(idx) + tables.p ** 2)
    return ua[:, None] + ub[None, :]


def quadratic_bound(tables: SeparableTables, clusters: list[Cluster], ops: Ops | None = None,
                    tracked_extra: int = TRACKED_EXTRA, chunk_elements: int = 1 << 24,
                    exact_over_c: bool = False) -> np.ndarray:
    """B(a, b) from the exact hidden activations (O(p²·d_mlp)); only the maximum over c is bounded.

    With ``exact_over_c`` the tracked phasors' maximum over c is taken exactly (O(p³·F) more) instead of
    by the triangle inequality 2 Σ_f |Y_f|.
    """
    ops = ops or Ops()
    p = tables.p
    dec = decompose(tables, clusters, ops, tracked_extra)
    phasors = np.zeros((p, p, len(dec.frequencies)), complex)
    remainder, loose = np.zeros((p, p)), np.zeros((p, p))
    rows_per_chunk = max(1, chunk_elements // (p * tables.d_mlp))
    for lo in range(0, p, rows_per_chunk):
        rows = slice(lo, lo + rows_per_chunk)
        hidden = np.maximum(tables.F_a[rows, None, :] + tables.F_b[None, :, :] + tables.b_in, 0)
        for term in dec.clusters:
            h = hidden[..., term.neurons]
            columns = np.searchsorted(dec.frequencies, term.tracked)
            phasors[rows][..., columns] += h @ term.gamma[:, columns]
            remainder[rows] += h @ term.remainder_span
        loose[rows] = hidden[..., dec.loose] @ dec.loose_span
    ops(3 * p * p * tables.d_mlp)
    for term in dec.clusters:
        ops(p * p * len(term.r) * (4 * len(term.tracked) + 2))
    for k, phasor in dec.target_phasors.items():
        phasors[..., np.searchsorted(dec.frequencies, k)] -= phasor
    ops(2 * p * p * len(dec.loose) + p * p * (4 * len(dec.frequencies) + 4))
    tracked = max_over_c(phasors, dec.frequencies, ops) if exact_over_c else 2 * np.abs(phasors).sum(-1)
    bound = tracked + remainder + loose
    return bound * (1 + SAFETY) + SAFETY


def max_over_c(phasors: np.ndarray, frequencies: np.ndarray, ops: Ops) -> np.ndarray:
    """max_c |Σ_f Re(Y_f (e^{iωf(a+b)} − e^{iωfc}))| exactly, for phasors ``[p, p, F]``: O(p³·F)."""
    p = phasors.shape[0]
    basis = np.exp(2j * np.pi * np.outer(frequencies, np.arange(p)) / p)  # [F, c]
    target = targets(p)
    out = np.empty((p, p))
    for a in range(p):
        values = np.real(phasors[a] @ basis)  # [b, c]
        out[a] = np.abs(values[np.arange(p), target[a]][:, None] - values).max(1)
    ops(p ** 3 * (8 * len(frequencies) + 3))
    return out
