"""Sound bounds on how far the model strays from its quadrature explanation (THEORY §7, docs/bounds.md).

The explanation is L3, the integral: per cluster ``(W_k/2) C(κ_k, β_k, δ) cos(ωk(a+b−c) − ψ0_k)``, plus
the exact direct path. For every input a bound B(a, b) ≥ max_c |err(a,b,a+b) − err(a,b,c)| is computed,
with err = model − explanation; an input is certified when the explanation's margin exceeds B.

Tiers (costs counted in arithmetic operations as they are performed):
  lipschitz     linear   the decomposition below, every residual taken by relu's Lipschitz constant
  arcs          linear   the same, with sign patterns: the signed residual enters exactly over the ideal
                         on-set; only bands around the kink, as wide as the largest residual share inside
                         them, are bounded
  arcs_grouped  linear   each cluster split by neuron offset into groups with their own waveform, each
                         group's worst differences a − b (its blind spots) evaluated exactly, and the
                         maximum over c taken exactly on the 16·p inputs where B looks loosest
  quadratic     O(p²m)   exact hidden activations; only the maximum over c is bounded
  quadratic_exact_c      the same with the tracked part's maximum over c taken exactly (O(p³F) more)
  brute force   O(p³m)   the truth

Decomposition (exact for any explanation parameters, so soundness never depends on the fit): neuron i of
cluster k has ``pre_i = r_i (κ + Q(θ_i; δ)) + ε_a[a, i] + ε_b[b, i]`` with Q = 2A cos θ + 2B cos 2θ,
A = cos(δ/2), B = β cos δ (κ, β the cluster's, or its group's); its output row is
``W_L[i, c] = μ_i + Σ_f Re(γ_i(f) e^{iωfc}) + Σ_j u_ij v_j(c) + ρ_i(c)`` over the cluster's tracked
frequencies f (the key frequency and its largest residual ones) and principal directions v_j.
The arc sums themselves run in ``quadlens.arcs`` (compiled).

Certificate (every tier): for each input, the J outputs nearest to beating a+b under the explanation are
checked one by one, the explanation's exact margin to each against the error's exact tracked difference there
plus the rest; every other output against B. The result is a proven lower bound on the model's margin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from numba import njit, prange

from . import arcs
from .arcs import SAFETY
from .clusters import Cluster, lens_parameters
from .ladder import integral_logits, margins, targets
from .lens import cluster_amplitude
from .tables import SeparableTables

TRACKED_EXTRA = 6  # residual output frequencies tracked per cluster besides the key frequency
DIRECTIONS = 4  # principal output directions tracked per cluster, of what its tracked frequencies leave
BAND_ITERATIONS = 2  # times the linear tier narrows each band to the residuals of the neurons inside it
COMPETITORS = 32  # outputs per input checked one by one: exact explanation margin against the error difference there


class Ops:
    """Counts arithmetic operations as they are performed (elementwise op = 1 per element, matmul = 2nkm)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, n: int | float) -> None:
        self.count += int(n)


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


# ---------------------------------------------------------------- the explanation and its margins

def explanation_phasors(cluster: Cluster, p: int) -> tuple[np.ndarray, dict]:
    """The explanation's key-frequency phasor per input ``[p, p]`` (complex) and the cluster's lens parameters."""
    lens = lens_parameters(cluster)
    t = np.arange(p)
    amplitude = cluster_amplitude(p, cluster.frequency, cluster.total_weight, lens["kappa"], lens["beta"])
    omega_k = 2 * np.pi * cluster.frequency / p
    return amplitude[_difference_index(p)] * np.exp(1j * (lens["psi0"] - omega_k * t))[targets(p)], lens


def explanation_margins_by_difference(clusters: list[Cluster], p: int, ops: Ops) -> np.ndarray:
    """The explanation's MLP logit difference (a+b) − c per a − b and j = a+b − c ≠ 0: ``[p, p − 1]``, O(p²K)."""
    j = np.arange(1, p)
    total = np.zeros((p, p - 1))
    for cluster in clusters:
        lens = lens_parameters(cluster)
        omega_k = 2 * np.pi * cluster.frequency / p
        amplitude = cluster_amplitude(p, cluster.frequency, cluster.total_weight, lens["kappa"], lens["beta"])
        total += amplitude[:, None] * (np.cos(lens["psi0"]) - np.cos(omega_k * j - lens["psi0"]))[None, :]
        ops(30 * p + 4 * p * (p - 1))
    return total


def _difference_index(p: int) -> np.ndarray:
    t = np.arange(p)
    return (t[:, None] - t[None, :]) % p


@dataclass
class Competitors:
    """Per input, the J outputs c ≠ a+b closest to winning under the explanation, the explanation's exact margin
    to each (direct path included; computed where asked, never stored for all p²·J), and a lower bound on its
    margin to every other output."""

    steps: np.ndarray  # [p, J]: per difference a − b, the listed j = a+b − c (never 0)
    by_difference: np.ndarray  # [p, p − 1]: the explanation's MLP margin per a − b and j
    D_a: np.ndarray
    D_b: np.ndarray
    others: np.ndarray  # [p, p]; inf when every output is listed

    @property
    def outputs(self) -> np.ndarray:
        """The listed outputs c = a+b − j per input ``[p, p, J]``."""
        p = len(self.steps)
        return (targets(p)[..., None] - self.steps[_difference_index(p)]) % p

    def margins(self, inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The explanation's exact margin to each listed output: ``[p, p, J]``, or ``[n, J]`` at the inputs (a, b)."""
        if inputs is not None:
            return _competitor_margins(self.by_difference, self.steps, self.D_a, self.D_b, *inputs)
        p = len(self.steps)
        a, b = np.divmod(np.arange(p * p), p)
        return _competitor_margins(self.by_difference, self.steps, self.D_a, self.D_b, a, b).reshape(p, p, -1)

    def lower_bound(self) -> np.ndarray:
        """A lower bound on the explanation's margin over all outputs ``[p, p]``."""
        return np.minimum(_nearest_margin(self.by_difference, self.steps, self.D_a, self.D_b), self.others)

    def proven_model_margin(self, differences: np.ndarray, bound: np.ndarray,
                            inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """A lower bound on the model's margin, given bounds on |err(a+b) − err(c)| at the listed outputs
        (``differences`` ``[p, p, J]``) and at every output (``bound`` ``[p, p]``); with ``inputs`` (a, b),
        on those inputs only (``differences`` ``[n, J]``)."""
        where = slice(None) if inputs is None else inputs
        return np.minimum((self.margins(inputs) - differences).min(-1, initial=np.inf),
                          self.others[where] - bound[where])


def nearest_competitors(tables: SeparableTables, clusters: list[Cluster], ops: Ops,
                        competitors: int = COMPETITORS) -> Competitors:
    """The J = ``competitors`` outputs per input with the smallest explanation MLP margin, in O(p²(K + J)).

    The MLP part depends on (a − b, j = a+b − c) only, so the J are chosen per a − b and compared exactly,
    direct path included. Every other output has at least the (J+1)-th smallest MLP margin plus the direct
    path's worst case split in two, D_a[a, a+b] − max_c D_a[a, c] plus the same for D_b. Its ``lower_bound``
    is the separable bound alone for ``competitors=0`` and the exact margin for ``competitors ≥ p − 1``.
    """
    p = tables.p
    by_difference = explanation_margins_by_difference(clusters, p, ops)  # [δ, j − 1]
    J = min(competitors, p - 1)
    rows = np.arange(p)
    difference, target = _difference_index(p), targets(p)
    if J == p - 1:
        others = np.full((p, p), np.inf)
        nearest = np.arange(1, p)[None].repeat(p, 0)
    else:
        direct = ((tables.D_a[rows[:, None], target] - tables.D_a.max(1)[:, None])
                  + (tables.D_b[rows[None, :], target] - tables.D_b.max(1)[None, :]))
        others = np.partition(by_difference, J, axis=1)[:, J][difference] + direct
        nearest = np.argpartition(by_difference, J - 1, axis=1)[:, :J] + 1 if J else np.zeros((p, 0), int)
        ops(7 * p * p)
    ops(8 * p * p * J + p * p * np.log2(max(p, 2)))  # each listed margin, formed once for the lower bound
    return Competitors(nearest, by_difference, tables.D_a, tables.D_b, others)


@njit(cache=True, inline="always")
def _margins_at(by_difference: np.ndarray, nearest: np.ndarray, D_a: np.ndarray, D_b: np.ndarray, a: int, b: int,
                out: np.ndarray) -> None:
    """The explanation's exact margin of a+b over each listed c = a+b − j at (a, b), direct path included."""
    p = D_a.shape[0]
    difference, target = a - b + (p if a < b else 0), a + b - (p if a + b >= p else 0)
    correct, margins, steps = D_a[a, target] + D_b[b, target], by_difference[difference], nearest[difference]
    for q in range(len(steps)):
        c = target - steps[q]
        c += p if c < 0 else 0
        out[q] = margins[steps[q] - 1] + correct - D_a[a, c] - D_b[b, c]


@njit(cache=True, parallel=True)
def _competitor_margins(by_difference: np.ndarray, nearest: np.ndarray, D_a: np.ndarray, D_b: np.ndarray,
                        a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The explanation's exact margin to each listed output at the inputs (a, b): ``[n, J]``."""
    out = np.empty((len(a), nearest.shape[1]))
    for i in prange(len(a)):
        _margins_at(by_difference, nearest, D_a, D_b, a[i], b[i], out[i])
    return out


@njit(cache=True, parallel=True)
def _nearest_margin(by_difference: np.ndarray, nearest: np.ndarray, D_a: np.ndarray, D_b: np.ndarray) -> np.ndarray:
    """The smallest of the explanation's margins to the listed outputs per input ``[p, p]`` (inf if none)."""
    p = D_a.shape[0]
    out = np.empty((p, p))
    for a in prange(p):
        listed = np.empty(nearest.shape[1])
        for b in range(p):
            _margins_at(by_difference, nearest, D_a, D_b, a, b, listed)
            out[a, b] = listed.min() if len(listed) else np.inf
    return out


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


def principal_directions(rows: np.ndarray, count: int, iterations: int = 4) -> np.ndarray:
    """Orthonormal directions ``[count, p]`` spanning most of the rows' energy, by subspace iteration: O(n·p·count).

    Any orthonormal directions keep the bounds sound; good ones leave less for the untracked remainder.
    """
    count = min(count, *rows.shape)
    if count == 0:
        return np.zeros((0, rows.shape[1]))
    basis = np.random.default_rng(0).standard_normal((rows.shape[1], count + 4))
    for _ in range(iterations):
        basis = np.linalg.qr(rows.T @ (rows @ basis))[0]
    return (np.linalg.svd(rows @ basis, full_matrices=False)[2][:count] @ basis.T)


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
    tracked: np.ndarray  # this cluster's tracked output frequencies (key first)
    gamma: np.ndarray  # [n, T] complex output coefficients at those frequencies
    coordinates: np.ndarray  # [n, R] output rows along the cluster's principal directions
    direction_columns: slice  # those directions' rows in Decomposition.directions
    remainder_span: np.ndarray  # [n] ptp of the output row beyond the tracked frequencies and directions
    span: np.ndarray  # [n] ptp of the whole output row: the most one unit of |h − ĥ| moves a logit difference
    neurons: np.ndarray  # model neuron indices, in phase order
    columns: np.ndarray | None = None  # the tracked frequencies' places in Decomposition.frequencies

    @property
    def output_weights(self) -> np.ndarray:
        """Per neuron ``[n, W]``, real: the tracked phasor coefficients' real parts, then their imaginary parts,
        direction coordinates, remainder span (``_Tracked.add`` reads sums of them in this order)."""
        return np.concatenate([self.gamma.real, self.gamma.imag, self.coordinates, self.remainder_span[:, None]],
                              axis=1)

    def residual_shares(self, sign: int) -> tuple[np.ndarray, np.ndarray]:
        """relu(sign·ε)/r for a and b ``[p, n]``: the most a residual of that sign moves κ + Q, per side."""
        return np.maximum(sign * self.eps_a, 0) / self.r, np.maximum(sign * self.eps_b, 0) / self.r


@dataclass
class Decomposition:
    clusters: list[ClusterTerms]
    frequencies: np.ndarray  # every tracked frequency (the union over clusters)
    directions: np.ndarray  # [R_total, p] every cluster's principal output directions
    target_phasors: dict[int, np.ndarray]  # explanation phasor per key frequency, [p, p]
    loose: np.ndarray  # neurons outside every cluster
    loose_span: np.ndarray


def _waveform_groups(own_kappa: np.ndarray, groups: int) -> list[np.ndarray]:
    """Neuron indices (phase order kept) split into ``groups`` of about equal size by their own offset κ_i."""
    edges = np.quantile(own_kappa, np.linspace(0, 1, groups + 1)[1:-1]) if groups > 1 else []
    label = np.searchsorted(edges, own_kappa, side="left")
    return [np.where(label == g)[0] for g in range(groups) if (label == g).any()]


def _input_residuals(tables: SeparableTables, idx: np.ndarray, k: int, r: np.ndarray, phi: np.ndarray,
                     kappa: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ε_a, ε_b ``[p, n]`` with pre_i = r_i (κ_i + Q(θ_i; δ)) + ε_a[a, i] + ε_b[b, i] exactly (docs §1)."""
    p = tables.p
    u = 2 * np.pi * k / p * np.arange(p)
    cos_theta = np.outer(np.cos(u), np.cos(phi)) - np.outer(np.sin(u), np.sin(phi))  # θ = u + φ
    waveform = r * (cos_theta + beta * (2 * cos_theta * cos_theta - 1))
    F_a, F_b = tables.F_a[:, idx], tables.F_b[:, idx]
    mean_a, mean_b = F_a.mean(0), F_b.mean(0)
    eps_a = F_a - mean_a - waveform + (mean_a + mean_b + tables.b_in[idx] - r * kappa)
    return eps_a, F_b - mean_b - waveform


def _output_split(W_L_rows: np.ndarray, k: int, tracked_extra: int, directions: int):
    """A cluster's centred output rows as tracked frequencies (key k first, then the largest residual ones),
    principal directions of what those leave, and the remainder: (tracked, γ, basis, coordinates, ρ)."""
    p = W_L_rows.shape[1]
    rows = W_L_rows - W_L_rows.mean(1, keepdims=True)
    key = np.array([k])
    residual_energy = np.abs(np.fft.rfft(rows - _reconstruct(_dft_coefficients(rows, key), key, p),
                                         axis=1)[:, 1:(p - 1) // 2 + 1]) ** 2
    extra = [int(f) + 1 for f in np.argsort(-residual_energy.sum(0)) if int(f) + 1 != k][:tracked_extra]
    tracked = np.array([k] + extra)
    gamma = _dft_coefficients(rows, tracked)
    remainder = rows - _reconstruct(gamma, tracked, p)
    basis = principal_directions(remainder, directions)
    coordinates = remainder @ basis.T
    return tracked, gamma, basis, coordinates, remainder - coordinates @ basis


def decompose(tables: SeparableTables, clusters: list[Cluster], ops: Ops, tracked_extra: int = TRACKED_EXTRA,
              directions: int = DIRECTIONS, waveform_groups: int = 1) -> Decomposition:
    """Split every cluster neuron into waveform + residuals and its output into tracked parts + remainder."""
    p = tables.p
    terms, frequencies, targets, all_directions = [], set(), {}, []
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
        own_kappa = cluster.offset_ratio[keep][order]
        own_beta = (cluster.harmonic_ratio * np.cos(cluster.harmonic_lock))[keep][order]
        groups = _waveform_groups(own_kappa, waveform_groups)
        kappa, beta = np.empty(len(idx)), np.empty(len(idx))
        for group in groups:  # one shared waveform per group: its neurons' median offset and harmonic
            kappa[group] = np.median(own_kappa[group]) if waveform_groups > 1 else lens["kappa"]
            beta[group] = np.median(own_beta[group]) if waveform_groups > 1 else lens["beta"]
        eps_a, eps_b = _input_residuals(tables, idx, k, r, phi, kappa, beta)
        tracked, gamma, basis, coordinates, remainder = _output_split(tables.W_L[idx], k, tracked_extra, directions)
        start = sum(len(d) for d in all_directions)
        all_directions.append(basis)
        ops(p * len(idx) * (20 + 8 * len(tracked) + 24 * (len(basis) + 4)) + 5 * p * len(idx) * np.log2(max(p, 2)))
        frequencies.update(tracked.tolist())
        for group in groups:
            terms.append(ClusterTerms(cluster, k, phi[group], r[group], kappa[group[0]], beta[group[0]],
                                      eps_a[:, group], eps_b[:, group], tracked, gamma[group], coordinates[group],
                                      slice(start, start + len(basis)), np.ptp(remainder[group], axis=1),
                                      np.ptp(tables.W_L[idx[group]], axis=1), idx[group]))
    loose = np.where(~clustered)[0]
    loose_span = np.ptp(tables.W_L[loose], axis=1)
    ops(3 * p * len(loose))
    freq_list = np.array(sorted(frequencies), dtype=int)
    for term in terms:
        term.columns = np.searchsorted(freq_list, term.tracked)
    stacked = np.concatenate(all_directions) if all_directions else np.zeros((0, p))
    return Decomposition(terms, freq_list, stacked, targets, loose, loose_span)


# ---------------------------------------------------------------- arcs: sums over neurons by phase

@dataclass
class ClusterSums:
    """One cluster's share of a bound per input: the summed output weights (``ClusterTerms.output_weights``,
    ``[W, p, p]``) of its activations as far as known, and the band term ``[p, p]`` bounding the rest."""

    found: np.ndarray
    band: np.ndarray


def _ideal_prefix(term: ClusterTerms, weights: np.ndarray) -> np.ndarray:
    """Prefix sums over the doubled phase list of (r, r cos φ, r sin φ, r cos 2φ, r sin 2φ) times each output
    weight: ``[2n+1, 5, W]``; r (κ + Q(θ)) for θ = u + φ is κ, 2A cos u, −2A sin u, 2B cos 2u, −2B sin 2u
    times these."""
    phase = term.phase
    parts = term.r * np.stack([np.ones_like(phase), np.cos(phase), np.sin(phase), np.cos(2 * phase), np.sin(2 * phase)])
    return arcs.prefix(parts.T[:, :, None] * weights[:, None, :])


def _sign_pattern_tables(term: ClusterTerms, p: int, workspace: arcs.Workspace) -> tuple[np.ndarray, ...]:
    """The arc kernel's tables for sign patterns: each side's residual prefix sums, the band prefix sums, the
    sparse tables of the residual shares and their largest values (``arcs.arc_sums`` documents each)."""
    weights = term.output_weights
    n, W = weights.shape
    residual_prefix = [arcs.row_prefix(eps, weights, workspace.array(f"residual {side}", (p, 2 * n + 1, W)))
                       for side, eps in enumerate((term.eps_a, term.eps_b))]
    # a neuron turned off by its residual loses at most relu(−η) (span for the logits, twice the remainder's
    # span for |h'|); one turned on gains at most relu(η)
    shares = [term.residual_shares(sign) for sign in (-1, 1)]  # [sign][side] -> [p, n]
    cost = [term.span + 2 * term.remainder_span, term.span]
    band_prefix = workspace.array("band prefix", (2, 2, p, 2 * n + 1))
    tables = workspace.array("share tables", (2, 2, arcs.table_levels(n), p, 2 * n))
    share_max = np.empty((2, 2, p))
    for s in range(2):
        for side, share in enumerate(shares[s]):
            band_prefix[s, side] = arcs.prefix(share * term.r * cost[s], axis=1)
            arcs.range_max_table(share, tables[s, side])
            share_max[s, side] = share.max(1)
    return (*residual_prefix, band_prefix, tables, share_max)


def _sign_pattern_sums(term: ClusterTerms, p: int, iterations: int, ops: Ops,
                       workspace: arcs.Workspace) -> ClusterSums:
    """Exact sums over the ideal on-set {κ + Q > 0} of ĥ_i plus the signed residual η_i; the band term covers
    the neurons whose sign the residual may flip, on each side of the kink (docs/bounds.md §3)."""
    weights = term.output_weights
    n, W = weights.shape
    tables = _sign_pattern_tables(term, p, workspace)
    ops(p * n * (6 * W + 24 + 8 * np.log2(max(2 * n, 2))) + n * 5 * W * 3)
    found, band = workspace.array("found", (W, p, p)), np.empty((p, p))
    performed = arcs.arc_sums(term.phase, term.kappa, term.beta, 2 * np.pi * term.frequency / p,
                              _ideal_prefix(term, weights), *tables, iterations, True, found, band)
    ops(performed.sum())
    return ClusterSums(found, band)


def _lipschitz_sums(term: ClusterTerms, p: int, ops: Ops, workspace: arcs.Workspace) -> ClusterSums:
    """Exact sums of the ideal activations ĥ; every neuron's residual taken by relu's Lipschitz constant."""
    weights = term.output_weights
    n, W = weights.shape
    found = workspace.array("found", (W, p, p))
    full_band = [np.abs(eps) @ term.span for eps in (term.eps_a, term.eps_b)]
    ops(n * 5 * W * 3 + 4 * p * n)
    unused = np.zeros((1, 1, W))
    performed = arcs.arc_sums(term.phase, term.kappa, term.beta, 2 * np.pi * term.frequency / p,
                              _ideal_prefix(term, weights), unused, unused, np.zeros((2, 2, 1, 1)),
                              np.zeros((2, 2, 1, 1, 1)), np.zeros((2, 2, 1)), 0, False, found, np.zeros((p, p)))
    ops(performed.sum() + p * p)
    return ClusterSums(found, full_band[0][:, None] + full_band[1][None, :])


def _exact_differences(sums: ClusterSums, term: ClusterTerms, tables: SeparableTables, count: int,
                       ops: Ops) -> None:
    """Replace the arcs by exact activations on the ``count`` differences a − b where the band term is largest.

    Each costs p·n: the group's blind spots, where the residuals decide every sign, are worth paying for.
    """
    p = tables.p
    if count <= 0:
        return
    a = np.arange(p)
    band_by_difference = np.bincount(_difference_index(p).ravel(), weights=sums.band.ravel(), minlength=p)
    from_a, from_b = tables.F_a[:, term.neurons] + tables.b_in[term.neurons], tables.F_b[:, term.neurons]
    for d in np.argsort(-band_by_difference)[:count]:
        b = (a - d) % p
        hidden = np.maximum(from_a + from_b[b], 0)
        sums.found[:, a, b] = (hidden @ term.output_weights).T
        sums.band[a, b] = 0.0
        ops(p * len(term.r) * (3 + 2 * len(sums.found)))
    ops(p * p)


def linear_error(tables: SeparableTables, clusters: list[Cluster], sign_patterns: bool = True,
                 ops: Ops | None = None, tracked_extra: int = TRACKED_EXTRA, directions: int = DIRECTIONS,
                 band_iterations: int = BAND_ITERATIONS, exact_differences: int = 0,
                 waveform_groups: int = 1) -> "ErrorTerms":
    """The error's terms in linear time: exact sums over arcs of phase, Lipschitz only where signs are uncertain.

    ``exact_differences`` evaluates that many differences a − b per cluster group exactly (O(p·n) each);
    ``waveform_groups`` splits each cluster by neuron offset, each group with its own waveform.
    """
    ops = ops or Ops()
    p = tables.p
    dec = decompose(tables, clusters, ops, tracked_extra, directions, waveform_groups)
    tracked = _Tracked.empty(p, dec)
    remainder, band = np.zeros((p, p)), np.zeros((p, p))
    workspace = arcs.Workspace()
    for term in dec.clusters:
        if sign_patterns:
            sums = _sign_pattern_sums(term, p, band_iterations, ops, workspace)
        else:
            sums = _lipschitz_sums(term, p, ops, workspace)
        _exact_differences(sums, term, tables, exact_differences, ops)
        tracked.add(term, sums.found[:-1])
        remainder += sums.found[-1]
        band += sums.band
    tracked.subtract_explanation(dec)
    ops(p * p * 2)
    return ErrorTerms(dec, tracked, remainder + band + _loose_bound(tables, dec, ops))


@dataclass
class ErrorTerms:
    """err(a+b) − err(c) per input, split in two: the tracked part E(a+b) − E(c), known exactly as phasors and
    direction coordinates, and ``rest`` ``[p, p]``, a bound on everything else that holds for every c."""

    dec: Decomposition
    tracked: "_Tracked"
    rest: np.ndarray
    _at_steps: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # (steps, [p, p, J])

    def bound(self, ops: Ops, exact_over_c: bool = False) -> np.ndarray:
        """B(a, b) ≥ max_c |err(a+b) − err(c)| ``[p, p]``, rounding slack included."""
        ops(self.rest.size * 3)
        return _with_slack(self.tracked.over_c(self.dec, ops, exact_over_c) + self.rest)

    def refine(self, bound: np.ndarray, steps: np.ndarray, count: int, ops: Ops) -> np.ndarray:
        """``bound`` with the tracked part's maximum over c taken exactly on the ``count`` inputs where it is
        likely loosest: ranked by B over the largest exact tracked difference at the listed steps (``steps``
        ``[p, J]``, as in ``Competitors``), a lower bound on that maximum. O(p²·J·(F + R) + count·p·(F + R)),
        linear in the parameter count for a fixed J and ``count`` ∝ p."""
        if count <= 0:
            return bound
        sampled = self._tracked_differences(steps, ops).max(-1, initial=0.0)
        looseness = (bound / np.maximum(sampled, 1e-12)).ravel()
        count = min(count, looseness.size)
        inputs = np.unravel_index(np.argpartition(-looseness, count - 1)[:count], bound.shape)
        basis = _output_basis(self.dec, bound.shape[0])
        target = targets(bound.shape[0])[inputs]
        exact = _with_slack(max_over_c(self.tracked.stacked(inputs), target, basis, ops) + self.rest[inputs])
        refined = bound.copy()
        refined[inputs] = np.minimum(bound[inputs], exact)
        ops(3 * looseness.size + count * np.log2(max(looseness.size, 2)) + 2 * count)
        return refined

    def differences(self, steps: np.ndarray, ops: Ops,
                    inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Bounds on |err(a+b) − err(c)| at c = a+b − j for the steps j listed per difference a − b (``steps``
        ``[p, J]``, as in ``Competitors``), the tracked part exactly, plus rest: ``[p, p, J]``, or ``[n, J]``
        for the given inputs (a, b)."""
        exact = self._tracked_differences(steps, ops, inputs)
        ops(exact.size * 3)
        rest = self.rest if inputs is None else self.rest[inputs]
        return _with_slack(exact + rest[..., None])

    def _tracked_differences(self, steps: np.ndarray, ops: Ops,
                             inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The tracked part's exact differences at the listed steps; once computed on every input (to refine),
        they are kept for the certificate, which reads them at the inputs it still needs."""
        if self._at_steps is not None and self._at_steps[0] is steps:
            every = self._at_steps[1]
            return every if inputs is None else every[inputs]
        if inputs is not None:
            return self.tracked.differences(self.dec, steps, ops, inputs)
        every = self.tracked.differences(self.dec, steps, ops)
        self._at_steps = (steps, every)
        return every


def _with_slack(bound: np.ndarray) -> np.ndarray:
    """Inflate a bound far beyond the accumulated rounding (docs/bounds.md §6)."""
    return bound * (1 + SAFETY) + SAFETY


@dataclass
class _Tracked:
    """The tracked part of the error per input: phasors Y_f ``[F, p, p]`` and direction coordinates ``[R, p, p]``."""

    phasors: np.ndarray
    coordinates: np.ndarray

    @classmethod
    def empty(cls, p: int, dec: Decomposition) -> "_Tracked":
        return cls(arcs.touched((len(dec.frequencies), p, p), complex), arcs.touched((len(dec.directions), p, p)))

    def add(self, term: ClusterTerms, sums: np.ndarray, rows: slice = slice(None)) -> None:
        """Add a cluster's summed output weights ``[W, ...]`` (real and imaginary parts of the phasor
        coefficients, then direction coordinates, as ``ClusterTerms.output_weights``)."""
        T = len(term.tracked)
        for t, column in enumerate(term.columns):
            _add_parts(self.phasors[column, rows], sums[t], sums[T + t])
        for t, column in enumerate(range(term.direction_columns.start, term.direction_columns.stop)):
            self.coordinates[column, rows] += sums[2 * T + t]

    def stacked(self, inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Every tracked value, in the order of ``_output_basis``: ``[F + R, p²]``, or ``[F + R, n]`` at the given
        inputs (a, b)."""
        if inputs is None:
            every = np.concatenate([self.phasors, self.coordinates.astype(complex)])
            return every.reshape(len(every), self.phasors.shape[1] ** 2)
        return np.concatenate([self.phasors[:, inputs[0], inputs[1]], self.coordinates[:, inputs[0], inputs[1]]])

    def subtract_explanation(self, dec: Decomposition) -> None:
        for k, phasor in dec.target_phasors.items():
            self.phasors[np.searchsorted(dec.frequencies, k)] -= phasor

    def over_c(self, dec: Decomposition, ops: Ops, exact: bool = False) -> np.ndarray:
        """A bound on max_c |E(a+b) − E(c)| for E(c) = Σ_f Re(Y_f e^{iωfc}) + Σ_j Y_j v_j(c).

        |E(a+b)| + Σ_f |Y_f| + Σ_j |Y_j| max|v_j| in O(p²(F + R)), or the maximum itself in O(p³(F + R)).
        """
        p = self.phasors.shape[1]
        basis = _output_basis(dec, p)  # [F + R, c] complex
        if exact:
            return max_over_c(self.stacked(), targets(p).ravel(), basis, ops).reshape(p, p)
        ops(p * p * (10 * len(self.phasors) + 4 * len(self.coordinates) + 1))
        return _peak_bound(self.phasors, self.coordinates, basis[:len(self.phasors)], dec.directions,
                           np.abs(dec.directions).max(1, initial=0.0))

    def differences(self, dec: Decomposition, steps: np.ndarray, ops: Ops,
                    inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """|E(a+b) − E(a+b − j)| exactly for the steps j listed per difference a − b (``steps`` ``[p, J]``):
        ``[p, p, J]``, or ``[n, J]`` for the given inputs (a, b). O(J·(F + R)) per input, a few small matrix
        products per difference."""
        p, J = self.phasors.shape[1], steps.shape[1]
        a, b = np.divmod(np.arange(p * p), p) if inputs is None else inputs
        rotation = _output_basis(dec, p)[:len(dec.frequencies)].T  # e^{iωfc}  [c, F]
        out = arcs.touched((len(a), J))
        _step_differences(self.phasors, self.coordinates, np.ascontiguousarray(rotation.real),
                          np.ascontiguousarray(rotation.imag), np.ascontiguousarray(dec.directions.T), steps,
                          np.asarray(a), np.asarray(b), out)
        ops(len(a) * (J * (4 * len(dec.frequencies) + 2 * len(dec.directions) + 1) + 6 * len(dec.frequencies)))
        return out.reshape(p, p, J) if inputs is None else out


@njit(cache=True, parallel=True)
def _step_differences(phasors: np.ndarray, coordinates: np.ndarray, cos: np.ndarray, sin: np.ndarray,
                      directions: np.ndarray, steps: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """|E(t) − E(t − j)| at each input (a, b), t = a+b, for its difference's steps j, into ``out`` ``[n, J]``.

    E(c) = Σ_f Re(Y_f e^{iωfc}) + Σ_r Y_r v_r(c), with e^{iωfc} = cos + i·sin ``[c, F]`` and v ``[c, R]``.
    """
    F, R, p, J = phasors.shape[0], coordinates.shape[0], cos.shape[0], steps.shape[1]
    for i in prange(len(a)):
        x, y = a[i], b[i]
        target, difference = (x + y) % p, (x - y) % p
        turned_re, turned_im, coordinate = np.empty(F), np.empty(F), np.empty(R)
        at_target = 0.0
        for f in range(F):  # Y_f e^{iωf t}
            value = phasors[f, x, y]
            turned_re[f] = value.real * cos[target, f] - value.imag * sin[target, f]
            turned_im[f] = value.real * sin[target, f] + value.imag * cos[target, f]
            at_target += turned_re[f]
        for r in range(R):
            coordinate[r] = coordinates[r, x, y]
            at_target += coordinate[r] * directions[target, r]
        for q in range(J):
            step = steps[difference, q]
            c = (target - step) % p
            # E(t − j) = Σ_f Re(Y_f e^{iωf t} e^{−iωf j}) + Σ_r Y_r v_r(t − j)
            there = 0.0
            for f in range(F):
                there += turned_re[f] * cos[step, f] + turned_im[f] * sin[step, f]
            for r in range(R):
                there += coordinate[r] * directions[c, r]
            out[i, q] = abs(at_target - there)


@njit(cache=True, parallel=True)
def _peak_bound(phasors: np.ndarray, coordinates: np.ndarray, rotation: np.ndarray, directions: np.ndarray,
                direction_peaks: np.ndarray) -> np.ndarray:
    """|E(a+b)| + Σ_f |Y_f| + Σ_j |Y_j| max|v_j| per input ``[p, p]`` (``_Tracked.over_c``), row by row."""
    F, p = phasors.shape[0], phasors.shape[1]
    out = np.empty((p, p))
    for a in prange(p):
        at_target, peak = np.zeros(p), np.zeros(p)
        for f in range(F):
            for b in range(p):
                y, turn = phasors[f, a, b], rotation[f, (a + b) % p]
                at_target[b] += y.real * turn.real - y.imag * turn.imag
                peak[b] += np.sqrt(y.real * y.real + y.imag * y.imag)
        for j in range(coordinates.shape[0]):
            for b in range(p):
                y = coordinates[j, a, b]
                at_target[b] += y * directions[j, (a + b) % p]
                peak[b] += abs(y) * direction_peaks[j]
        for b in range(p):
            out[a, b] = abs(at_target[b]) + peak[b]
    return out


@njit(cache=True, parallel=True)
def _add_parts(phasor: np.ndarray, real: np.ndarray, imaginary: np.ndarray) -> None:
    """phasor += real + i·imaginary, in one pass over ``[rows, p]`` arrays."""
    for a in prange(phasor.shape[0]):
        for b in range(phasor.shape[1]):
            phasor[a, b] += complex(real[a, b], imaginary[a, b])


def _output_basis(dec: Decomposition, p: int) -> np.ndarray:
    """e^{iωfc} for the tracked frequencies, then the real principal directions: ``[F + R, p]`` complex."""
    c = np.arange(p)
    return np.concatenate([np.exp(2j * np.pi * np.outer(dec.frequencies, c) / p), dec.directions.astype(complex)])


def _loose_bound(tables: SeparableTables, dec: Decomposition, ops: Ops) -> np.ndarray:
    """Neurons outside every cluster: h_i ≤ relu(F_a + b_in) + relu(F_b), times the span of their output row."""
    idx = dec.loose
    if len(idx) == 0:
        return np.zeros((tables.p, tables.p))
    ua = np.maximum(tables.F_a[:, idx] + tables.b_in[idx], 0) @ dec.loose_span
    ub = np.maximum(tables.F_b[:, idx], 0) @ dec.loose_span
    ops(6 * tables.p * len(idx) + tables.p ** 2)
    return ua[:, None] + ub[None, :]


def quadratic_error(tables: SeparableTables, clusters: list[Cluster], ops: Ops | None = None,
                    tracked_extra: int = TRACKED_EXTRA, directions: int = DIRECTIONS,
                    chunk_elements: int = 1 << 24) -> ErrorTerms:
    """The error's terms from the exact hidden activations (O(p²·d_mlp)); only the maximum over c is left."""
    ops = ops or Ops()
    p = tables.p
    dec = decompose(tables, clusters, ops, tracked_extra, directions)
    tracked = _Tracked.empty(p, dec)
    remainder, loose = np.zeros((p, p)), np.zeros((p, p))
    rows_per_chunk = max(1, chunk_elements // (p * tables.d_mlp))
    for lo in range(0, p, rows_per_chunk):
        rows = slice(lo, lo + rows_per_chunk)
        hidden = np.maximum(tables.F_a[rows, None, :] + tables.F_b[None, :, :] + tables.b_in, 0)
        for term in dec.clusters:
            sums = np.moveaxis(hidden[..., term.neurons] @ term.output_weights, -1, 0)
            tracked.add(term, sums[:-1], rows)
            remainder[rows] += sums[-1]
        loose[rows] = hidden[..., dec.loose] @ dec.loose_span
    ops(3 * p * p * tables.d_mlp)
    for term in dec.clusters:
        ops(p * p * len(term.r) * 2 * term.output_weights.shape[1])
    tracked.subtract_explanation(dec)
    ops(2 * p * p * len(dec.loose) + p * p * 4)
    return ErrorTerms(dec, tracked, remainder + loose)


def max_over_c(values: np.ndarray, target: np.ndarray, basis: np.ndarray, ops: Ops, chunk: int = 4096) -> np.ndarray:
    """max_c |E(t) − E(c)| exactly per input, E(c) = Re(Σ_j values_j basis_j(c)), for ``values`` ``[J, n]`` and each
    input's correct output t (``target`` ``[n]``): ``[n]``, in O(n·p·J)."""
    n, p = values.shape[1], basis.shape[1]
    out = np.empty(n)
    for lo in range(0, n, chunk):
        e = np.real(values[:, lo:lo + chunk].T @ basis)  # [inputs, c]
        at_target = e[np.arange(len(e)), target[lo:lo + chunk]]
        out[lo:lo + chunk] = np.abs(at_target[:, None] - e).max(1)
    ops(n * p * (8 * len(basis) + 3))
    return out
