"""Clusters of neurons sharing a key frequency, and what they share (THEORY §3).

Within a pizza cluster every neuron's input is one waveform ``r_i · g(ωkt + φ_i)`` with
``g(θ) = cos θ + β cos(2θ + λ)`` (THEORY measures β ≈ 0.1 and the lock λ ≈ π, i.e. cos θ − 0.1 cos 2θ),
its output phase is its input phase doubled (ψ_i ≈ 2φ_i + ψ0, ψ0 ≈ 0), and F_a and F_b agree (φ ≈ φ').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fourier import resultant, self_conjugate, wrap
from .lens import cluster_amplitude
from .neurons import CLUSTERED, NeuronFits


@dataclass(frozen=True)
class Spread:
    """A statistic over a cluster's neurons: mean and standard deviation (or resultant for angles)."""

    mean: float
    spread: float


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    return float(values[order[np.searchsorted(np.cumsum(weights[order]), 0.5 * weights.sum())]])


@dataclass(frozen=True)
class Cluster:
    """One frequency's neurons, symmetrised (r = (r_a + r_b)/2, φ = circular mean of φ_a, φ_b)."""

    frequency: int
    neurons: np.ndarray
    r: np.ndarray
    phi: np.ndarray
    s: np.ndarray
    psi: np.ndarray
    offset: np.ndarray
    harmonic_ratio: np.ndarray
    harmonic_lock: np.ndarray
    doubling_resultant: float
    doubling_mean: float
    symmetry_resultant: float
    symmetry_mean: float
    amplitude_ratio: Spread

    @property
    def weights(self) -> np.ndarray:
        """Quadrature weights w_i = 2 r_i s_i."""
        return 2 * self.r * self.s

    @property
    def total_weight(self) -> float:
        """W_k = Σ_i w_i."""
        return float(self.weights.sum())

    @property
    def offset_ratio(self) -> np.ndarray:
        """κ_i = c_i / r_i: the constant part of each pre-activation in units of its amplitude."""
        return self.offset / self.r

    def shared_waveform(self) -> dict[str, float]:
        """The cluster's one waveform: β (weight-averaged), λ and ψ0 (mean angles), κ and amplitude r̄ (weighted medians)."""
        w = self.weights
        return {"beta": float(np.average(self.harmonic_ratio, weights=w)),
                "lock": resultant(self.harmonic_lock, w)[1],
                "psi0": self.doubling_mean,
                "kappa": weighted_median(self.offset_ratio, w),
                "scale": weighted_median(self.r, w)}


def lens_parameters(cluster: Cluster, harmonics: bool = True) -> dict[str, float]:
    """κ, β' = β cos λ (0 without harmonics), ψ0 and the amplitude scale r̄ of the cluster's integral (L3)."""
    shape = cluster.shared_waveform()
    return {"kappa": shape["kappa"], "beta": shape["beta"] * np.cos(shape["lock"]) if harmonics else 0.0,
            "psi0": shape["psi0"], "scale": shape["scale"]}


def l3_amplitude(cluster: Cluster, p: int) -> tuple[np.ndarray, dict[str, float]]:
    """The cluster's L3 amplitude (W_k/2) C(κ, β', δ) per (a − b) mod p ``[p]`` (relu), and its lens parameters."""
    lens = lens_parameters(cluster)
    return cluster_amplitude(p, cluster.frequency, cluster.total_weight, lens["kappa"], lens["beta"]), lens


def _harmonic_at_nyquist(fits: NeuronFits, idx: np.ndarray) -> tuple[float, float]:
    """The β and λ that a cluster's neurons share where their second harmonic 2k is the Nyquist frequency p/2 (p = 4k):
    there cos(2θ + λ) = cos(2φ_i + λ) · (−1)^t at θ = ωkt + φ_i, so each neuron shows only that one number, not its
    own β_i and λ_i, and the cluster's β and λ are fitted to all of them at once (least squares over both inputs)."""
    amp = np.concatenate([fits.amp_a[0, idx], fits.amp_b[0, idx]])
    phi = np.concatenate([fits.phase_a[0, idx], fits.phase_b[0, idx]])
    shown = np.concatenate([fits.amp_a[1, idx] * np.cos(fits.phase_a[1, idx]),
                            fits.amp_b[1, idx] * np.cos(fits.phase_b[1, idx])])  # r_i β cos(2φ_i + λ)
    design = amp[:, None] * np.stack([np.cos(2 * phi), -np.sin(2 * phi)], 1)  # times (β cos λ, β sin λ)
    (along, across), *_ = np.linalg.lstsq(design, shown, rcond=None)
    return float(np.hypot(along, across)), float(np.arctan2(across, along))


def build_clusters(fits: NeuronFits, b_in: np.ndarray) -> list[Cluster]:
    """One :class:`Cluster` per key frequency among clustered neurons, largest total weight first."""
    clusters = []
    for k in np.unique(fits.frequency[fits.status == CLUSTERED]):
        idx = np.where((fits.status == CLUSTERED) & (fits.frequency == k))[0]
        r_a, r_b = fits.amp_a[0, idx], fits.amp_b[0, idx]
        phi_a, phi_b = fits.phase_a[0, idx], fits.phase_b[0, idx]
        phi = np.angle(r_a * np.exp(1j * phi_a) + r_b * np.exp(1j * phi_b))
        s, psi = fits.amp_L[0, idx], fits.phase_L[0, idx]
        if fits.n_harmonics >= 2 and self_conjugate(fits.p, 2 * k):  # 2k is p/2: see _harmonic_at_nyquist
            beta, lock = _harmonic_at_nyquist(fits, idx)
            ratio, lock = np.full(len(idx), beta), np.full(len(idx), lock)
        elif fits.n_harmonics >= 2:
            ratio = (fits.amp_a[1, idx] + fits.amp_b[1, idx]) / (r_a + r_b)
            lock = np.angle(fits.amp_a[1, idx] * np.exp(1j * (fits.phase_a[1, idx] - 2 * phi_a))
                            + fits.amp_b[1, idx] * np.exp(1j * (fits.phase_b[1, idx] - 2 * phi_b)))
        else:
            ratio, lock = np.zeros(len(idx)), np.zeros(len(idx))
        doubling = resultant(psi - 2 * phi)
        symmetry = resultant(phi_a - phi_b)
        amp_ratio = r_b / r_a
        clusters.append(Cluster(
            frequency=int(k), neurons=idx, r=(r_a + r_b) / 2, phi=phi, s=s, psi=psi,
            offset=fits.offset_a[idx] + fits.offset_b[idx] + b_in[idx], harmonic_ratio=ratio,
            harmonic_lock=wrap(lock), doubling_resultant=doubling[0], doubling_mean=doubling[1],
            symmetry_resultant=symmetry[0], symmetry_mean=symmetry[1],
            amplitude_ratio=Spread(float(amp_ratio.mean()), float(amp_ratio.std()))))
    return sorted(clusters, key=lambda c: -c.total_weight)
