"""The infinite-width lens (THEORY §4): a cluster's sum over neurons read as an integral over phases.

A cluster of neurons with symmetrised input ``r_i [κ + 2 cos(δ/2) cos θ_i + 2B cos 2θ_i]`` (δ = ωk(a−b),
θ_i = ωk(a+b)/2 + φ_i, B = β_eff cos δ) and output ``s_i cos(2θ_i − Δ')`` (Δ' = ωk(a+b−c) − ψ0) sums, when
its phases fill the circle, to

    (W_k / 2) · C(κ, β_eff, δ) · cos Δ',    C = (1/2π) ∫ relu(κ + 2 cos(δ/2) cos θ + 2B cos 2θ) cos 2θ dθ

(the sin Δ' part vanishes: the integrand is even in θ). C is evaluated exactly: the relu's argument is a
quadratic in cos θ, so the integral splits at its roots into pieces with elementary antiderivatives.
With κ = β = 0, C = 2|cos(δ/2)|/(3π) and the sum is the closed form L∞ = (W_k/3π)|cos(δ/2)| cos Δ'.
"""

from __future__ import annotations

import numpy as np
import torch

INTEGRAL_CONSTANT = 1 / (3 * np.pi)  # (1/2π) ∫ relu(cos θ) cos 2θ dθ
LENS_POINTS = 1024  # periodic trapezoid points for smooth activations (spectrally accurate; tested)


def apply_activation(act_fn: str, x: np.ndarray) -> np.ndarray:
    from .model import activation

    return activation(act_fn, torch.from_numpy(np.asarray(x, dtype=float))).numpy()


def activation_integral(act_fn: str, kappa, beta, delta, scale: float = 1.0, n: int = LENS_POINTS) -> np.ndarray:
    """C_act = (1/2π) ∫ act(s·(κ + 2cos(δ/2) cos θ + 2β cos δ cos 2θ))/s · cos 2θ dθ at amplitude s = ``scale``.

    For relu (positively homogeneous) s cancels and the exact :func:`waveform_integral` is used; any other
    activation is smooth and integrated by the periodic trapezoid rule on ``n`` points.
    """
    if act_fn == "relu":
        return waveform_integral(kappa, beta, delta)
    kappa, beta, delta = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (kappa, beta, delta)))
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    q = (kappa[..., None] + 2 * np.cos(delta / 2)[..., None] * np.cos(theta)
         + 2 * (beta * np.cos(delta))[..., None] * np.cos(2 * theta))
    return (apply_activation(act_fn, scale * q) / scale * np.cos(2 * theta)).mean(-1)


def lobe(act_fn: str, scale: float, theta: np.ndarray) -> np.ndarray:
    """act(s cos θ)/s: one node's activation at phase θ and amplitude s (relu(cos θ) for relu)."""
    return apply_activation(act_fn, scale * np.cos(theta)) / scale


def lobe_integral(act_fn: str = "relu", scale: float = 1.0, n: int = LENS_POINTS) -> float:
    """(1/2π) ∫ act(s cos θ)/s · cos 2θ dθ: the quadrature's target per unit weight (1/3π for relu)."""
    if act_fn == "relu":
        return INTEGRAL_CONSTANT
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return float((lobe(act_fn, scale, theta) * np.cos(2 * theta)).mean())


def _antiderivative(theta: np.ndarray, kappa, A, B) -> np.ndarray:
    """∫ (κ + 2A cos θ + 2B cos 2θ) cos 2θ dθ."""
    return (kappa * np.sin(2 * theta) / 2 + 2 * A * (np.sin(3 * theta) / 6 + np.sin(theta) / 2)
            + 2 * B * (theta / 2 + np.sin(4 * theta) / 8))


def roots_in_unit_interval(kappa, A, B) -> np.ndarray:
    """Real roots in [−1, 1] of 4B x² + 2A x + (κ − 2B) (x = cos θ), padded with ±1: ``[..., 4]`` sorted."""
    a2, a1, a0 = np.broadcast_arrays(4 * B, 2 * A, kappa - 2 * B)
    a2, a1, a0 = (np.asarray(v, dtype=float) for v in (a2, a1, a0))
    linear = np.abs(a2) < 1e-12 * (np.abs(a1) + np.abs(a0) + 1e-300)
    with np.errstate(all="ignore"):  # np.where evaluates both branches; the unused one may overflow
        disc = np.sqrt(a1 * a1 - 4 * a2 * a0)
        r1 = np.where(linear, -a0 / a1, (-a1 - disc) / (2 * a2))
        r2 = np.where(linear, np.nan, (-a1 + disc) / (2 * a2))
    roots = np.stack([-np.ones_like(r1), np.clip(np.nan_to_num(r1, nan=-1.0), -1, 1),
                      np.clip(np.nan_to_num(r2, nan=-1.0), -1, 1), np.ones_like(r1)], axis=-1)
    return np.sort(roots, axis=-1)


def waveform_integral(kappa, beta, delta) -> np.ndarray:
    """C(κ, β, δ) = (1/2π) ∫ relu(κ + 2cos(δ/2) cos θ + 2β cos δ cos 2θ) cos 2θ dθ, exactly (broadcasting)."""
    kappa, beta, delta = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (kappa, beta, delta)))
    A, B = np.cos(delta / 2), beta * np.cos(delta)
    x = roots_in_unit_interval(kappa, A, B)
    total = np.zeros(kappa.shape)
    for lo, hi in ((x[..., 0], x[..., 1]), (x[..., 1], x[..., 2]), (x[..., 2], x[..., 3])):
        mid = (lo + hi) / 2
        positive = (kappa + 2 * A * mid + 2 * B * (2 * mid * mid - 1) > 0) & (hi > lo)
        piece = _antiderivative(np.arccos(lo), kappa, A, B) - _antiderivative(np.arccos(hi), kappa, A, B)
        total += np.where(positive, piece, 0.0)
    return total / np.pi  # θ ∈ [0, π] counted twice (even integrand), divided by 2π


def waveform_integral_numeric(kappa: float, beta: float, delta: float, n: int = 200_000) -> float:
    """The same integral by the periodic trapezoid rule on ``n`` points (a check, not used in the pipeline)."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    g = kappa + 2 * np.cos(delta / 2) * np.cos(theta) + 2 * beta * np.cos(delta) * np.cos(2 * theta)
    return float(np.mean(np.maximum(g, 0) * np.cos(2 * theta)))


def cluster_lens_table(p: int, frequency: int, total_weight: float, psi0: float, kappa: float = 0.0,
                       beta: float = 0.0, act_fn: str = "relu", scale: float = 1.0) -> np.ndarray:
    """One cluster's infinite-width logits (W_k/2) C_act(κ, β, δ) cos(Δ − ψ0) by (a − b, a + b − c) mod p, on
    which alone they depend: ``[p, p]``, O(p²) where the logits are p³ (``by_difference_and_step`` reads them out
    per (a, b, c))."""
    amplitude = cluster_amplitude(p, frequency, total_weight, kappa, beta, act_fn, scale)
    return amplitude[:, None] * np.cos(2 * np.pi * frequency * np.arange(p) / p - psi0)[None, :]


def by_difference_and_step(table, t, rows: slice = slice(None)):
    """Logits ``[len(rows), p, p]`` (a, b, c) for a in ``rows``, read from a table by (a − b, a + b − c) mod p:
    ``table[(a − b) mod p, (a + b − c) mod p]``. ``t`` is 0 … p − 1 (numpy, or torch on the device wanted)."""
    p = table.shape[0]
    a, b, c = t[rows, None, None], t[None, :, None], t[None, None, :]
    return table[(a - b) % p, (a + b - c) % p]


def cluster_amplitude(p: int, frequency: int, total_weight: float, kappa: float = 0.0, beta: float = 0.0,
                      act_fn: str = "relu", scale: float = 1.0) -> np.ndarray:
    """(W_k/2) C_act(κ, β, δ) for each a − b (mod p), ``[p]``: the cluster's L3 amplitude (only p distinct δ)."""
    return (total_weight / 2) * activation_integral(act_fn, kappa, beta, 2 * np.pi * frequency * np.arange(p) / p,
                                                    scale)
