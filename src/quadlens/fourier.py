"""Fourier conventions (THEORY §2): ω = 2π/p, f̂(k) = Σ_t f(t) e^{−iωkt}, f(t) = m + Σ_k r_k cos(ωkt + φ_k).

All functions act on the first axis (the token axis, length p) of an array of columns.
"""

from __future__ import annotations

import numpy as np


def self_conjugate(p: int, k: np.ndarray | int) -> np.ndarray | bool:
    """Whether frequency k is its own conjugate modulo p (k ≡ −k: k ≡ 0, or p/2 for an even p), where
    cos(ωkt + φ) = cos φ · (±1)^t has no phase to fit."""
    return (2 * np.asarray(k)) % p == 0


def alternating(p: int) -> np.ndarray:
    """(−1)^t = cos(πt) for t = 0 … p − 1: the cosine at the Nyquist frequency p/2 of an even p, the parity of t."""
    return (-1.0) ** np.arange(p)


def energy_by_frequency(x: np.ndarray) -> np.ndarray:
    """Share of each column's non-constant energy at each frequency k = 1..p//2: ``[p // 2, n_cols]``.

    A frequency k < p/2 holds the energy of k and −k. For even p the last row is the Nyquist frequency p/2, its own
    conjugate: cos(πt) = (−1)^t, the parity of t.
    """
    p = x.shape[0]
    spectrum = np.abs(np.fft.fft(x, axis=0)) ** 2
    total = spectrum[1:].sum(0)
    energy = spectrum[1:p // 2 + 1] * np.where(np.arange(1, p // 2 + 1) < p / 2, 2.0, 1.0)[:, None]
    return energy / np.where(total > 0, total, 1.0)


def amplitude_phase(x: np.ndarray, k: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares amplitude r ≥ 0 and phase φ of the cosine at frequency ``k`` (per column, any integer k).

    On a full period the least-squares fit is the DFT projection: r = 2|f̂(k)|/p, φ = arg f̂(k), except where
    k ≡ −k (mod p), k ≡ 0 or, for even p, the Nyquist frequency p/2: there cos(ωkt + φ) = cos φ · (±1)^t, f̂(k) is
    real, and r = |f̂(k)|/p with φ = 0 or π.
    """
    p, n = x.shape
    k = np.broadcast_to(np.asarray(k), (n,)) % p
    t = np.arange(p)[:, None]
    coefficient = (x * np.exp(-2j * np.pi * k[None, :] * t / p)).sum(0)
    return np.where(self_conjugate(p, k), 1, 2) * np.abs(coefficient) / p, np.angle(coefficient)


def cosine(p: int, k: np.ndarray | int, amplitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Columns ``amplitude · cos(ω k t + phase)`` for t = 0..p−1: ``[p, n]``."""
    t = np.arange(p)[:, None]
    return amplitude * np.cos(2 * np.pi * np.asarray(k) * t / p + phase)


def cosine_factors(p: int, k: np.ndarray | int, amplitude: np.ndarray,
                   phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cosine(p, k, amplitude, phase).T`` (``[n, p]``) as coefficients ``[n, 2m]`` times a basis ``[2m, p]`` of
    cos(ω k t) and sin(ω k t) over the m distinct k: rows of rank 2m, so that a product through them costs 2m/p as
    much."""
    k = np.broadcast_to(np.asarray(k) % p, np.shape(amplitude))
    distinct, which = np.unique(k, return_inverse=True)
    angles = 2 * np.pi * distinct[:, None] * np.arange(p) / p
    m, rows = len(distinct), np.arange(len(k))
    coefficients = np.zeros((len(k), 2 * m))
    coefficients[rows, which] = amplitude * np.cos(phase)
    coefficients[rows, m + which] = -amplitude * np.sin(phase)
    return coefficients, np.concatenate([np.cos(angles), np.sin(angles)])


def wrap(angle: np.ndarray) -> np.ndarray:
    """Angles into (−π, π]."""
    return np.angle(np.exp(1j * np.asarray(angle)))


def resultant(angles: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Mean resultant length and mean angle of a set of angles (1 = all equal)."""
    if len(angles) == 0:
        return float("nan"), float("nan")
    z = np.average(np.exp(1j * np.asarray(angles)), weights=weights)
    return float(abs(z)), float(np.angle(z))
