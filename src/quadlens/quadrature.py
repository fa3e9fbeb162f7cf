"""The quadrature view (THEORY §5): each neuron of a cluster is a node φ_i with weight w_i = 2 r_i s_i.

The rule approximates (W_k/2π) ∫ relu(cos θ) cos(2θ − Δ) dθ = W_k cos Δ / 3π. At offset x its error is

    E(x, Δ) = Σ_i w_i relu(cos(x + φ_i)) cos(2(x + φ_i) − Δ) − W_k cos Δ / 3π = C(x) cos Δ + S(x) sin Δ,

so sup_Δ |E| = √(C² + S²). Inputs reach only the offsets x = ωk(a+b)/2 (+π where cos(ωk(a−b)/2) < 0),
at most 2p of them; the continuous sup is taken over a fine grid plus every kink of the relu.

The mean of C over the reachable offsets is a *gain*: it scales the cluster's vote W_k cos Δ / 3π alike at every
input instead of bending it. Where the inputs show a cluster all p angles its offsets are π/p apart and the gain
is near zero; where k shares a factor with p they show only p/gcd(k, p), and the gain can be large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .lens import lobe, lobe_integral

GRID_POINTS = 1 << 14
LIPSCHITZ = 3.0  # |d/du relu(cos u) cos(2u − Δ)| ≤ |sin u| + 2|cos u| ≤ 3 (componentwise, both C and S)


def error_parts(phases: np.ndarray, weights: np.ndarray, x: np.ndarray, act_fn: str = "relu",
                scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """C(x) and S(x), the error's cos Δ and sin Δ parts at each offset in ``x`` (in the units of the weights).

    The integrand is act(s cos θ)/s · cos(2θ − Δ) (s = ``scale``; relu(cos θ) cos(2θ − Δ) for relu).
    """
    u = x[:, None] + phases[None, :]
    weighted = lobe(act_fn, scale, u) * weights[None, :]
    c = (weighted * np.cos(2 * u)).sum(1) - weights.sum() * lobe_integral(act_fn, scale)
    return c, (weighted * np.sin(2 * u)).sum(1)


def rule_error(phases: np.ndarray, weights: np.ndarray, x: np.ndarray, act_fn: str = "relu",
               scale: float = 1.0) -> np.ndarray:
    """sup_Δ |E(x, Δ)| at each offset in ``x`` (absolute, in the units of the weights)."""
    return np.hypot(*error_parts(phases, weights, x, act_fn, scale))


def input_angles(p: int, frequency: int) -> int:
    """How many distinct angles ωk·t the inputs t show a cluster at frequency k: p/gcd(k, p)."""
    return p // math.gcd(frequency, p)


def reachable_offsets(p: int, frequency: int) -> np.ndarray:
    """Every offset x ∈ [0, 2π) that some input (a, b) puts the cluster's nodes at."""
    t = np.arange(p)
    a, b = np.meshgrid(t, t, indexing="ij")
    half_turns = frequency * (a + b) + p * (np.cos(np.pi * frequency * (a - b) / p) < 0)  # x in units of π/p
    return np.unique(half_turns % (2 * p)) * np.pi / p


@dataclass(frozen=True)
class RuleError:
    """A rule's worst error relative to the exact integral W_k/3π, reachable and continuous, and its gain."""

    reachable_rel: float
    continuous_rel: float
    continuous_rel_uncertainty: float
    gain_rel: float  # mean C / (W_k/3π) over the reachable offsets: how much the rule scales the vote at every input
    reachable_after_gain_rel: float  # the worst reachable error once that gain is taken out


def evaluate_rule(phases: np.ndarray, weights: np.ndarray, p: int, frequency: int, act_fn: str = "relu",
                  scale: float = 1.0) -> RuleError:
    """Worst error of a rule at the reachable offsets and over all x (grid + kinks, with its Lipschitz slack)."""
    target = weights.sum() * lobe_integral(act_fn, scale)
    grid = np.linspace(0, 2 * np.pi, GRID_POINTS, endpoint=False)
    kinks = np.concatenate([np.pi / 2 - phases, -np.pi / 2 - phases]) % (2 * np.pi)
    continuous = rule_error(phases, weights, np.concatenate([grid, kinks]), act_fn, scale).max()
    lipschitz = LIPSCHITZ if act_fn == "relu" else LIPSCHITZ + 0.2  # GELU's slope exceeds 1 by < 0.13
    slack = lipschitz * np.sqrt(2) * np.abs(weights).sum() * (np.pi / GRID_POINTS)
    c, s = error_parts(phases, weights, reachable_offsets(p, frequency), act_fn, scale)
    gain = c.mean()
    return RuleError(float(np.hypot(c, s).max() / target), float(continuous / target), float(slack / abs(target)),
                     float(gain / target), float(np.hypot(c - gain, s).max() / target))


def baseline_rules(phases: np.ndarray, weights: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Rules with the model's total weight: equal weights at the model's phases, and evenly spaced nodes."""
    n, total = len(phases), weights.sum()
    equal = np.full(n, total / n)
    return {"equal_weights": (phases, equal),
            "evenly_spaced": (2 * np.pi * np.arange(n) / n, equal)}
