"""The exact decomposition every bound tier starts from (docs/bounds.md §1).

Neuron i of cluster k has ``pre_i = r_i (κ + Q(θ_i; δ)) + ε_a[a, i] + ε_b[b, i]`` with Q = 2A cos θ + 2B cos 2θ,
A = cos(δ/2), B = β cos δ (κ, β the cluster's, or its waveform group's); its output row is
``W_L[i, c] = μ_i + Σ_f Re(γ_i(f) e^{iωfc}) + Σ_j u_ij v_j(c) + ρ_i(c)`` over the cluster's tracked
frequencies f (the key frequency and its largest residual ones) and principal directions v_j. The split is
exact for any explanation parameters, so soundness never depends on the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from .clusters import Cluster, l3_amplitude
from .ladder import difference_index, targets
from .ops import Ops
from .parity import Parity
from .tables import SeparableTables

TRACKED_EXTRA = 6  # residual output frequencies tracked per cluster besides the key frequency
DIRECTIONS = 4  # principal output directions tracked per cluster, of what its tracked frequencies leave
MISFIT_REACH = 0.5  # a cluster neuron whose residuals can move κ + Q further than this may leave the arcs (docs §3)


def explanation_phasors(cluster: Cluster, difference: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, dict]:
    """The explanation's key-frequency phasor per input ``[p, p]`` (complex) and the cluster's lens parameters,
    given each input's (a − b) mod p and (a + b) mod p (``ladder.difference_index`` and ``ladder.targets``)."""
    p = len(difference)
    amplitude, lens = l3_amplitude(cluster, p)
    turn = np.exp(1j * (lens["psi0"] - 2 * np.pi * cluster.frequency / p * np.arange(p)))
    return amplitude[difference] * turn[target], lens


def rotation(frequencies: np.ndarray, p: int) -> np.ndarray:
    """e^{iωfc} for the given frequencies f and every output c ``[F, p]`` (ω = 2π/p)."""
    return np.exp(2j * np.pi * np.outer(frequencies, np.arange(p)) / p)


def _reconstruct(coefficients: np.ndarray, frequencies: np.ndarray, p: int) -> np.ndarray:
    return np.real(coefficients @ rotation(frequencies, p))


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
    span: np.ndarray  # [n] ptp of the whole output row: the most one unit of |h − ĥ| moves a logit difference
    neurons: np.ndarray  # model neuron indices, in phase order
    remainder: np.ndarray  # [n, p] what the tracked frequencies and directions leave of each output row: ρ_i
    columns: np.ndarray | None = None  # the tracked frequencies' places in Decomposition.frequencies
    _residual_norms: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Row-major whatever indexing made them (a column selection is column-major, a single column both):
        # the compiled kernels read rows a and b, and compile once per memory layout, so one layout means one
        # compilation, the one the warm-up (``certify.load_compiled_kernels``) makes before anything is timed.
        self.eps_a, self.eps_b = np.ascontiguousarray(self.eps_a), np.ascontiguousarray(self.eps_b)

    @cached_property
    def remainder_span(self) -> np.ndarray:
        """[n] ptp of each output row's remainder ρ_i: the most one unit of activation moves it between outputs."""
        return np.ptp(self.remainder, axis=1)

    def residual_norms(self, ops: Ops) -> tuple[np.ndarray, np.ndarray]:
        """‖ε_a[a, ·]‖₂ and ‖ε_b[b, ·]‖₂ over the group's neurons ``[p]`` each: the most the residuals move the
        activations, in norm (the remainder's bounds by Cauchy–Schwarz and by harmonics, docs/bounds.md §1).
        Computed, and counted, on first use: both bounds read them."""
        if self._residual_norms is None:
            ops(2 * self.eps_a.size + 2 * self.eps_b.size)
            self._residual_norms = np.linalg.norm(self.eps_a, axis=1), np.linalg.norm(self.eps_b, axis=1)
        return self._residual_norms

    @cached_property
    def output_weights(self) -> np.ndarray:
        """Per neuron ``[n, W]``, real: the tracked phasor coefficients' real parts, then their imaginary parts,
        direction coordinates, remainder span (``_Tracked.add`` reads sums of them in this order)."""
        return np.concatenate([self.gamma.real, self.gamma.imag, self.coordinates, self.remainder_span[:, None]],
                              axis=1)

    def signed_residuals(self, sign: int) -> tuple[np.ndarray, np.ndarray]:
        """relu(sign·ε) for a and b ``[p, n]``: the most a residual of that sign moves the pre-activation, per side."""
        return np.maximum(sign * self.eps_a, 0), np.maximum(sign * self.eps_b, 0)

    def residual_shares(self, sign: int) -> tuple[np.ndarray, np.ndarray]:
        """relu(sign·ε)/r for a and b ``[p, n]``: the most a residual of that sign moves κ + Q, per side."""
        return tuple(side / self.r for side in self.signed_residuals(sign))

    def reach(self) -> np.ndarray:
        """[n] the furthest each neuron's residuals move its κ + Q, either way, over all inputs: its share of the
        widest band (docs/bounds.md §3). Large where the group's waveform fits the neuron badly."""
        return np.maximum(*(a.max(0) + b.max(0) for a, b in map(self.residual_shares, (-1, 1))))

    def subset(self, keep: np.ndarray) -> "ClusterTerms":
        """The same terms for the kept neurons alone (a boolean mask in phase order)."""
        return replace(self, phase=self.phase[keep], r=self.r[keep], eps_a=self.eps_a[:, keep],
                       eps_b=self.eps_b[:, keep], gamma=self.gamma[keep], coordinates=self.coordinates[keep],
                       span=self.span[keep], neurons=self.neurons[keep], remainder=self.remainder[keep])


@dataclass
class LooseSplit:
    """The loose neurons' output rows on the tracked basis (``_loose_split``)."""

    weights: np.ndarray  # [n, 2F + R + 1] the coefficients, then the span (ptp) of the remainder ρ_i they leave
    remainder_norms: np.ndarray  # [p] per output c, ‖ρ_i(c)‖₂ over the loose neurons


@dataclass
class Decomposition:
    clusters: list[ClusterTerms]
    frequencies: np.ndarray  # every tracked frequency (the union over clusters)
    directions: np.ndarray  # [R_total, p] every cluster's principal output directions
    target_phasors: dict[int, np.ndarray]  # explanation phasor per key frequency, [p, p]
    loose: np.ndarray  # neurons outside every cluster's arcs: in no cluster, or left out as misfits (``decompose``)
    loose_rows: np.ndarray  # [n, p] their output rows W_L[i]
    remainder_norms: np.ndarray  # [p] per output c, ‖ρ_i(c)‖₂ over every neuron i in the arcs
    parity: np.ndarray  # [n] bool: which loose neurons are the parity term's (none without one)
    _loose_split: LooseSplit | None = field(default=None, repr=False)

    @property
    def loose_span(self) -> np.ndarray:
        """[n] ptp of each loose neuron's output row: the most one unit of its activation moves a logit difference."""
        return np.ptp(self.loose_rows, axis=1)

    def loose_split(self, ops: Ops) -> LooseSplit:
        """The loose rows on the tracked basis: computed, and counted, on first use, by the tiers that know the
        loose neurons' activations exactly."""
        if self._loose_split is None:
            p = self.loose_rows.shape[1]
            basis = output_basis(self.frequencies, self.directions, p)
            ops(2 * p * (len(basis) + 1) ** 2 + 6 * p * len(self.loose) * (len(basis) + 1))
            self._loose_split = _loose_split(self.loose_rows, basis)
        return self._loose_split


def output_basis(frequencies: np.ndarray, directions: np.ndarray, p: int) -> np.ndarray:
    """The tracked outputs as real rows ``[2F + R, p]``: cos ωfc, −sin ωfc per frequency, then the directions, so
    that Σ_f Re(Y_f e^{iωfc}) + Σ_j Y_j v_j(c) is the real form (Re Y, Im Y, Y_j) · basis."""
    turn = rotation(frequencies, p)
    return np.concatenate([turn.real, -turn.imag, directions])


def _loose_split(rows: np.ndarray, basis: np.ndarray) -> LooseSplit:
    """Output rows of neurons outside the arcs on the tracked basis (``output_basis``) and a constant, by least
    squares: the coefficients, the span (ptp) of what they leave and that remainder's norm per output. The split
    is exact whatever the fit: the remainder is defined as the row less its fitted part."""
    fit_basis = np.concatenate([basis, np.ones((1, basis.shape[1]))])
    coefficients = np.linalg.lstsq(fit_basis.T, rows.T, rcond=None)[0].T
    remainder = rows - coefficients @ fit_basis
    return LooseSplit(np.concatenate([coefficients[:, :-1], np.ptp(remainder, axis=1)[:, None]], axis=1),
                      np.sqrt((remainder ** 2).sum(0)))


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
    spectrum = np.fft.rfft(rows, axis=1)  # γ(f) = (2/p)·spectrum[:, f], with row(c) = Σ_f Re(γ(f) e^{iωfc})
    energy = (np.abs(spectrum[:, 1:(p - 1) // 2 + 1]) ** 2).sum(0)  # per frequency 1 … (p − 1)/2
    extra = [int(f) + 1 for f in np.argsort(-energy) if int(f) + 1 != k][:tracked_extra]
    tracked = np.array([k] + extra)
    gamma = 2 / p * spectrum[:, tracked]
    remainder = rows - _reconstruct(gamma, tracked, p)
    basis = principal_directions(remainder, directions)
    coordinates = remainder @ basis.T
    return tracked, gamma, basis, coordinates, remainder - coordinates @ basis


def decompose(tables: SeparableTables, clusters: list[Cluster], ops: Ops, tracked_extra: int = TRACKED_EXTRA,
              directions: int = DIRECTIONS, waveform_groups: int = 1, exact_neurons: int = 0,
              reach: float = MISFIT_REACH, parity: Parity | None = None) -> Decomposition:
    """Split every cluster neuron into waveform + residuals and its output into tracked parts + remainder.

    The parity neurons (``parity``) stay loose, and the explanation's parity term is a phasor at the frequency p/2,
    which is then tracked too (docs/bounds.md §1).

    Up to ``exact_neurons`` neurons may be evaluated exactly rather than by arcs: the neurons outside every cluster,
    and, if that leaves room, the cluster neurons whose residuals reach furthest past ``reach`` (``_misfits``).
    Those join the loose neurons; the explanation is unchanged.
    """
    p = tables.p
    terms, frequencies, target_phasors, all_directions = [], set(), {}, []
    difference, target = difference_index(p), targets(p)
    for cluster in clusters:
        keep = cluster.r > 1e-9 * max(cluster.r.max(), 1e-300)
        order = np.argsort(np.mod(cluster.phi[keep] + np.pi, 2 * np.pi))
        idx = cluster.neurons[keep][order]
        r, phi = cluster.r[keep][order], np.mod(cluster.phi[keep][order] + np.pi, 2 * np.pi) - np.pi
        k = cluster.frequency
        phasor, lens = explanation_phasors(cluster, difference, target)
        target_phasors[k] = target_phasors.get(k, 0) + phasor
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
                                      slice(start, start + len(basis)), np.ptp(tables.W_L[idx[group]], axis=1),
                                      idx[group], remainder[group]))
    if parity is not None:
        target_phasors[p // 2] = parity.phasor(difference)
        frequencies.add(p // 2)
        ops(2 * p * p)
    unclustered = tables.d_mlp - sum(len(term.r) for term in terms)
    kept = [~misfit for misfit in _misfits(terms, exact_neurons - unclustered, reach, ops)]
    terms = [term.subset(keep) if not keep.all() else term for term, keep in zip(terms, kept) if keep.any()]
    remainder_squares = sum(((term.remainder ** 2).sum(0) for term in terms), np.zeros(p))
    clustered = np.zeros(tables.d_mlp, bool)
    for term in terms:
        clustered[term.neurons] = True
    loose = np.where(~clustered)[0]
    ops(3 * p * len(loose) + 2 * p * clustered.sum() + p)
    freq_list = np.array(sorted(frequencies), dtype=int)
    for term in terms:
        term.columns = np.searchsorted(freq_list, term.tracked)
    stacked = np.concatenate(all_directions) if all_directions else np.zeros((0, p))
    in_parity = np.isin(loose, parity.neurons) if parity is not None else np.zeros(len(loose), bool)
    return Decomposition(terms, freq_list, stacked, target_phasors, loose, tables.W_L[loose],
                         np.sqrt(remainder_squares), in_parity)


def _misfits(terms: list[ClusterTerms], count: int, reach: float, ops: Ops) -> list[np.ndarray]:
    """Per term, which neurons leave the arcs: of those whose residuals reach further than ``reach``
    (``ClusterTerms.reach``), the ``count`` that reach furthest. Such a neuron's sign is the residuals' to decide
    over a wide arc, and its share sets the band's width for every neuron near its phase (docs/bounds.md §3)."""
    if count <= 0 or not terms:
        return [np.zeros(len(term.r), bool) for term in terms]
    reaches = [term.reach() for term in terms]
    flat = np.concatenate(reaches)
    ops(8 * flat.size * len(terms[0].eps_a))
    candidates = np.flatnonzero(flat > reach)
    chosen = np.zeros(len(flat), bool)
    chosen[candidates[np.argsort(-flat[candidates], kind="stable")[:count]]] = True
    return np.split(chosen, np.cumsum([len(r) for r in reaches])[:-1])
