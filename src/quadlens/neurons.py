"""Each neuron's Fourier description: key frequency, energy shares, amplitude–phase fits (THEORY §2–3).

For neuron i with key frequency k the fits are, with harmonics h = 1, 2, …:

    F_a[t, i] ≈ m_i  + Σ_h r_{h,i}  cos(ω h k t + φ_{h,i})
    F_b[t, i] ≈ m'_i + Σ_h r'_{h,i} cos(ω h k t + φ'_{h,i})
    W_L[i, c] ≈ μ_i  + Σ_h s_{h,i}  cos(ω h k c + ψ_{h,i})

The key frequency is the one of 1..(p−1)/2 (and, for an even p, the Nyquist frequency p/2) that holds most of
F_a's energy. A neuron is ``dead`` when it can barely move any logit difference, ``mixed`` when no single frequency
dominates its input or its input and output disagree on the key frequency, and ``parity`` when they agree on p/2:
it reads the parity of a and b and writes that of c (cos(πt) = (−1)^t), two angles, no circle of phases. None of
them is forced into a cluster.
A harmonic that falls on the key frequency or an earlier harmonic modulo p (2k ≡ −k when p = 3k: only where p
is not prime, or p = 3) cannot be told apart from it, and is fitted as zero rather than counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fourier import amplitude_phase, cosine, cosine_factors, energy_by_frequency, self_conjugate
from .tables import SeparableTables

DEAD, MIXED, CLUSTERED, PARITY = "dead", "mixed", "cluster", "parity"


@dataclass(frozen=True)
class NeuronFits:
    """Per-neuron fits; amplitude/phase arrays are ``[n_harmonics, d_mlp]`` (row h−1 is harmonic h)."""

    p: int
    frequency: np.ndarray
    share_a: np.ndarray
    share_b: np.ndarray
    share_L: np.ndarray
    influence: np.ndarray
    status: np.ndarray
    offset_a: np.ndarray
    offset_b: np.ndarray
    offset_L: np.ndarray
    amp_a: np.ndarray
    phase_a: np.ndarray
    amp_b: np.ndarray
    phase_b: np.ndarray
    amp_L: np.ndarray
    phase_L: np.ndarray

    @property
    def n_harmonics(self) -> int:
        return self.amp_a.shape[0]

    def inputs(self, n_harmonics: int) -> tuple[np.ndarray, np.ndarray]:
        """Fitted F_a, F_b ``[p, d_mlp]`` with the first ``n_harmonics`` harmonics."""
        return (self._series(self.offset_a, self.amp_a, self.phase_a, n_harmonics),
                self._series(self.offset_b, self.amp_b, self.phase_b, n_harmonics))

    def output_factors(self, n_harmonics: int, neurons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fitted W_L of ``neurons`` (``[n, p]``) with the first ``n_harmonics`` harmonics, as coefficients
        ``[n, R]`` times a basis ``[R, p]``: the constant, then cos and sin of each harmonic's distinct frequencies
        (``fourier.cosine_factors``), so of low rank when the neurons share a few key frequencies."""
        parts = [(self.offset_L[neurons, None], np.ones((1, self.p)))]
        parts += [cosine_factors(self.p, (h + 1) * self.frequency[neurons], self.amp_L[h, neurons],
                                 self.phase_L[h, neurons]) for h in range(n_harmonics)]
        return np.hstack([c for c, _ in parts]), np.vstack([b for _, b in parts])

    def _series(self, offset: np.ndarray, amp: np.ndarray, phase: np.ndarray, n_harmonics: int) -> np.ndarray:
        columns = offset[None, :].repeat(self.p, 0)
        for h in range(n_harmonics):
            columns = columns + cosine(self.p, (h + 1) * self.frequency, amp[h], phase[h])
        return columns


def neuron_influence(tables: SeparableTables) -> np.ndarray:
    """The most neuron i can move a logit difference: max_ab act(pre_i) · (max_c W_L[i] − min_c W_L[i])."""
    top_pre = tables.F_a.max(0) + tables.F_b.max(0) + tables.b_in
    return np.maximum(top_pre, 0.0) * np.ptp(tables.W_L, axis=1)


def aliased_harmonic(p: int, frequency: np.ndarray, h: int) -> np.ndarray:
    """Whether harmonic ``h`` of each key frequency is, modulo p, the frequency of an earlier harmonic j < h (or of
    the constant, j = 0), up to sign: then the same Fourier coefficient would be fitted twice."""
    return np.any([((h - j) * frequency) % p == 0 for j in range(h)]
                  + [((h + j) * frequency) % p == 0 for j in range(1, h)], axis=0)


def fit_neurons(tables: SeparableTables, n_harmonics: int = 2, min_share: float = 0.5,
                dead_tolerance: float = 1e-3) -> NeuronFits:
    """Key frequencies, shares and fits of every neuron; statuses by ``min_share`` and ``dead_tolerance``."""
    if n_harmonics < 1:
        raise ValueError(f"n_harmonics must be at least 1 (the key frequency), got {n_harmonics}")
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share is a share of a neuron's energy, in [0, 1]; got {min_share}")
    p = tables.p
    energy_a, energy_b, energy_L = (energy_by_frequency(x) for x in (tables.F_a, tables.F_b, tables.W_L.T))
    frequency = energy_a.argmax(0) + 1
    columns = np.arange(tables.d_mlp)
    share_a = energy_a[frequency - 1, columns]
    share_b = energy_b[frequency - 1, columns]
    share_L = energy_L[frequency - 1, columns]
    influence = neuron_influence(tables)
    agree = (energy_b.argmax(0) + 1 == frequency) & (energy_L.argmax(0) + 1 == frequency) & (share_a >= min_share)
    status = np.where(influence <= dead_tolerance * max(influence.max(), 1e-300), DEAD,
                      np.where(agree, np.where(self_conjugate(p, frequency), PARITY, CLUSTERED), MIXED))
    fits = {}
    aliased = np.stack([aliased_harmonic(p, frequency, h) for h in range(1, n_harmonics + 1)])
    for name, x in (("a", tables.F_a), ("b", tables.F_b), ("L", tables.W_L.T)):
        amp_phase = [amplitude_phase(x, h * frequency) for h in range(1, n_harmonics + 1)]
        fits[f"offset_{name}"] = x.mean(0)
        fits[f"amp_{name}"] = np.where(aliased, 0.0, np.stack([a for a, _ in amp_phase]))
        fits[f"phase_{name}"] = np.stack([ph for _, ph in amp_phase])
    return NeuronFits(p=p, frequency=frequency, share_a=share_a, share_b=share_b, share_L=share_L,
                      influence=influence, status=status, **fits)
