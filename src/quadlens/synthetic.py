"""Pizza models built from THEORY's formulas: known phases, weights, harmonics, offsets, plus optional noise.

:func:`pizza_tables` draws the separable tables; :func:`model_from_tables` realises any tables exactly as a
constant-attention :class:`~quadlens.model.Transformer` (d_model = 3p, one head), so every quadlens stage
can be checked against known ground truth, at any p and width; :func:`misfitted` spoils an explanation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .clusters import Cluster
from .fourier import alternating
from .lens import waveform_integral
from .model import ModelConfig, Transformer
from .parity import Parity
from .tables import SeparableTables


@dataclass(frozen=True)
class PizzaSpec:
    """The ground truth of a synthetic pizza: per neuron its frequency, phase, amplitudes and offset ratio."""

    p: int
    frequency: np.ndarray
    phi: np.ndarray
    r: np.ndarray
    s: np.ndarray
    beta: float
    kappa: float


def pizza_spec(p: int, frequencies: tuple[int, ...] = (3, 15, 17), neurons_per_cluster: int = 40,
               beta: float = 0.1, kappa: float = 0.2, jitter: float = 0.5, weight_spread: float = 0.05,
               seed: int = 0) -> PizzaSpec:
    """Per cluster: stratified phases (evenly spaced, each moved by up to ``jitter``/2 of a slot, randomly
    rotated); input amplitudes r log-normal around 1; output amplitudes s = w/(2r) with quadrature weights
    w log-normal with spread ``weight_spread``.

    Uniformly random phases, or random weights, would make a poor rule (a Monte-Carlo one, relative error of
    order 3/√n): trained models' phases and weights form a good quadrature (THEORY §5).
    """
    rng = np.random.default_rng(seed)
    n = neurons_per_cluster
    slots = np.arange(n)[None, :] + jitter * rng.uniform(-0.5, 0.5, (len(frequencies), n))
    phi = 2 * np.pi * slots / n + rng.uniform(0, 2 * np.pi, (len(frequencies), 1))
    size = len(frequencies) * n
    return PizzaSpec(p=p, frequency=np.repeat(np.asarray(frequencies), n), phi=np.angle(np.exp(1j * phi.ravel())),
                     r=(r := np.exp(rng.normal(0, 0.3, size))), s=np.exp(rng.normal(0, weight_spread, size)) / (2 * r),
                     beta=beta, kappa=kappa)


def ideal_worst_margin(p: int, frequencies: tuple[int, ...], kappa: float = 0.2, beta: float = 0.1) -> float:
    """The smallest margin of the infinite-width explanation of a synthetic pizza with these key frequencies, over
    every input and wrong output, per unit of W_k/2 (each cluster equally heavy): min over δ and j ≠ 0 of
    Σ_k C(κ, −β, kδ) (1 − cos ωkj). (``pizza_tables`` writes the harmonic as −β cos 2θ.)"""
    t = np.arange(p)
    amplitude = waveform_integral(kappa, -beta, 2 * np.pi * t / p)  # C at δ = ω·t; cluster k reads t = kδ mod p
    separation = 1 - np.cos(2 * np.pi * t / p)
    total = np.zeros((p, p - 1))
    for k in frequencies:
        total += amplitude[(k * t) % p][:, None] * separation[(k * t[1:]) % p][None, :]
    return float(total.min())


def separating_frequencies(p: int, count: int = 4, kappa: float = 0.2, beta: float = 0.1, tries: int = 64,
                           seed: int = 0) -> tuple[int, ...]:
    """Key frequencies whose ideal pizza separates the right answer from every wrong one by a wide margin
    (``ideal_worst_margin``): the best of ``tries`` random draws, then improved one frequency at a time.

    Trained models pick such frequencies; evenly spaced ones are nearly multiples of one another, and then some
    wrong output c is close to winning under every cluster at once (at p = 457, (46, 92, 137, 183) leave a
    worst margin of 5e-4 against 0.09 here), so the model they build cannot add.
    """
    rng = np.random.default_rng(seed)
    choices = np.arange(1, (p - 1) // 2 + 1)
    if count > len(choices):
        raise ValueError(f"{count} distinct key frequencies do not exist mod p = {p}")
    best = max((ideal_worst_margin(p, draw, kappa, beta), draw) for draw in
               (tuple(int(k) for k in np.sort(rng.choice(choices, count, replace=False))) for _ in range(tries)))
    for slot in range(count):  # one sweep of coordinate ascent over a sample of replacements
        for k in rng.choice(choices, min(len(choices), tries), replace=False):
            draw = tuple(sorted(best[1][:slot] + (int(k),) + best[1][slot + 1:]))
            if len(set(draw)) == count:
                best = max(best, (ideal_worst_margin(p, draw, kappa, beta), draw))
    return best[1]


def pizza_tables(spec: PizzaSpec, noise: float = 0.0, seed: int = 0,
                 output_noise: float | None = None) -> SeparableTables:
    """F_a = F_b = r (cos θ − β cos 2θ) at θ = ωkt + φ, b_in = κ r, W_L = s cos(ωkc + 2φ); independent Gaussian
    noise in every entry, ``noise`` times the median r in F_a and F_b and ``output_noise`` (default ``noise``)
    times the median s in W_L."""
    output_noise = noise if output_noise is None else output_noise
    rng = np.random.default_rng(seed + 1)
    p, omega = spec.p, 2 * np.pi / spec.p
    theta = omega * spec.frequency[None, :] * np.arange(p)[:, None] + spec.phi[None, :]
    F = spec.r * (np.cos(theta) - spec.beta * np.cos(2 * theta))
    W_L = (spec.s * np.cos(omega * spec.frequency[None, :] * np.arange(p)[:, None] + 2 * spec.phi)).T
    m = len(spec.phi)
    scale, output_scale = noise * np.median(spec.r), output_noise * np.median(spec.s)
    return SeparableTables(F_a=F + scale * rng.normal(size=(p, m)), F_b=F + scale * rng.normal(size=(p, m)),
                           b_in=spec.kappa * spec.r, W_L=W_L + output_scale * rng.normal(size=(m, p)),
                           D_a=np.zeros((p, p)), D_b=np.zeros((p, p)))


def with_parity_neurons(tables: SeparableTables, count: int, seed: int = 0, scale: float = 0.5,
                        asymmetry: float = 0.0) -> SeparableTables:
    """``tables`` (an even p) with ``count`` neurons added that read the parity of a and b and write that of c:
    F_a = A (−1)^t + m, F_b = A' (−1)^t + m', W_L = w (−1)^c, with |A| and |w| uniform in [scale, 2·scale]
    (random signs), offsets uniform in ±scale/2, and A' = A (1 + ``asymmetry`` · a standard normal draw)."""
    if tables.p % 2:
        raise ValueError(f"parity neurons need an even p (the frequency p/2), got p={tables.p}")
    rng = np.random.default_rng(seed)
    sign = alternating(tables.p)
    signed = lambda: rng.choice([-1.0, 1.0], count) * rng.uniform(scale, 2 * scale, count)  # noqa: E731
    amplitude, weight = signed(), signed()
    amplitude_b = amplitude * (1 + asymmetry * rng.normal(size=count))
    offset_a, offset_b = rng.uniform(-scale / 2, scale / 2, (2, count))
    return replace(tables, F_a=np.hstack([tables.F_a, np.outer(sign, amplitude) + offset_a]),
                   F_b=np.hstack([tables.F_b, np.outer(sign, amplitude_b) + offset_b]),
                   b_in=np.concatenate([tables.b_in, np.zeros(count)]),
                   W_L=np.vstack([tables.W_L, np.outer(weight, sign)]))


def with_random_parity_neurons(tables: SeparableTables, rng: np.random.Generator) -> SeparableTables:
    """``tables`` with 1 to p parity neurons (``with_parity_neurons``) of random count, scale in [0.1, 1] and
    asymmetry in [0, 0.5]; at an odd p, unchanged (and no draw made)."""
    if tables.p % 2:
        return tables
    return with_parity_neurons(tables, int(rng.integers(1, tables.p + 1)), int(rng.integers(1 << 30)),
                               scale=float(rng.uniform(0.1, 1.0)), asymmetry=float(rng.uniform(0, 0.5)))


def model_from_tables(tables: SeparableTables, constant_attention: tuple[float, float] = (0.5, 0.5),
                      dtype: torch.dtype = torch.float64) -> Transformer:
    """A constant-attention transformer whose F_a, F_b, b_in and W_L are exactly ``tables``' (direct path zero).

    Embeddings are one-hot in block 0 of a 3p-wide residual stream; one head copies block 0 to block 1, so
    F_a = α0 · M and F_b = N + α1 · M for W_in = [N; M; 0]; W_U reads block 2, where only W_out writes.
    """
    p, m = tables.p, tables.d_mlp
    alpha0, alpha1 = constant_attention
    cfg = ModelConfig(p=p, d_model=3 * p, n_heads=1, d_head=p, d_mlp=m, act_fn=tables.act_fn,
                      attention_rate=1.0, constant_attention=constant_attention)
    eye, d = np.eye(p), 3 * p
    M = tables.F_a / alpha0
    params = {
        "W_E": np.hstack([eye, np.zeros((p, 2 * p))]), "W_pos": np.zeros((2, d)),
        "W_Q": np.zeros((1, d, p)), "W_K": np.zeros((1, d, p)),
        "W_V": np.vstack([eye, np.zeros((2 * p, p))])[None], "W_O": np.hstack([np.zeros((p, p)), eye, np.zeros((p, p))])[None],
        "W_in": np.vstack([tables.F_b - alpha1 * M, M, np.zeros((p, m))]), "b_in": tables.b_in,
        "W_out": np.hstack([np.zeros((m, 2 * p)), tables.W_L]), "b_out": np.zeros(d),
        "W_U": np.vstack([np.zeros((2 * p, p)), eye]),
    }
    return Transformer(cfg, {name: torch.tensor(value, dtype=dtype) for name, value in params.items()})


def misfitted(clusters: list[Cluster], scale: float, rng: np.random.Generator) -> list[Cluster]:
    """The clusters with their phases, amplitudes, offsets, harmonics and doubling perturbed by Gaussian noise of
    ``scale``: an explanation that fits badly, to check that the bounds never rely on the fit."""
    out = []
    for c in clusters:
        n = len(c.neurons)
        out.append(replace(c, phi=c.phi + scale * rng.normal(size=n), r=c.r * np.exp(scale * rng.normal(size=n)),
                           s=c.s * np.exp(scale * rng.normal(size=n)), offset=c.offset + scale * rng.normal(size=n),
                           harmonic_ratio=c.harmonic_ratio + scale * rng.normal(size=n),
                           doubling_mean=c.doubling_mean + scale * rng.normal()))
    return out


def misfitted_parity(parity: Parity, scale: float, rng: np.random.Generator) -> Parity:
    """The parity term with its neurons' amplitudes, offsets and weights perturbed by Gaussian noise of ``scale``
    (relative and absolute): an explanation that fits badly, as :func:`misfitted` makes of the clusters."""
    n = len(parity.neurons)
    spoilt = lambda x: x * np.exp(scale * rng.normal(size=n)) + scale * rng.normal(size=n)  # noqa: E731
    return replace(parity, **{name: spoilt(getattr(parity, name)) for name in ("amplitude", "offset", "weight")})
