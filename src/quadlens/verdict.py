"""Clock or pizza (THEORY §8, Zhong et al. 2023), and whether the quadrature explanation fits a model.

A model is a ``pizza`` when every *required* criterion holds: it solves the task, and the quadrature
explanation's structure is there and, substituted for the MLP, still solves it. Zhong et al.'s two measures
are *indicators*: they depend on the embedding basis (gradient symmetricity) and on how evenly the clusters
cover each other's blind spots (distance irrelevance), so they are reported, not required. A model that
fails a required criterion is a ``clock`` when it is accurate and both indicators point to a clock,
otherwise it ``does not fit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .ladder import by_sum_and_difference
from .model import Transformer, forward
from .text import figure

PIZZA, CLOCK, DOES_NOT_FIT = "pizza", "clock", "does not fit"


def gradient_symmetricity(model: Transformer, n_samples: int = 1000, seed: int = 0) -> float:
    """Mean cosine similarity of ∂logit_c/∂x_a and ∂logit_c/∂x_b over random (a, b, c) (x: embedded inputs)."""
    cfg = model.cfg
    generator = torch.Generator().manual_seed(seed)
    a, b, c = torch.randint(cfg.p, (3, n_samples), generator=generator)
    params = {name: t.detach().to("cpu", torch.float64)[None] for name, t in model.params().items()}
    x0 = (params["W_E"][0, a] + params["W_pos"][0, 0]).requires_grad_(True)
    x1 = (params["W_E"][0, b] + params["W_pos"][0, 1]).requires_grad_(True)
    rows = torch.arange(n_samples)
    logits = forward(params, cfg, rows, rows, embeddings=(x0[None], x1[None]))[0]
    grad0, grad1 = torch.autograd.grad(logits[rows, c].sum(), (x0, x1))
    return float(torch.nn.functional.cosine_similarity(grad0, grad1, dim=-1).mean())


def distance_irrelevance(correct: np.ndarray) -> float:
    """Mean over a−b of the std over a+b of the correct logit ``[p, p]``, over its overall std (small for
    pizzas)."""
    return float(by_sum_and_difference(correct).std(0).mean() / correct.std())


@dataclass(frozen=True)
class Criterion:
    """One test of the pizza picture: the measured value, the threshold, and whether it passed."""

    name: str
    value: float
    threshold: float
    passed: bool
    description: str
    required: bool = True

    def reason(self) -> str:
        kind = "" if self.required else " [indicator]"
        return f"{self.description}: measured {figure(self.value)}, needs {figure(self.threshold)}{kind}"


def at_least(name: str, value: float, threshold: float, description: str, required: bool = True) -> Criterion:
    return Criterion(name, float(value), threshold, bool(value >= threshold), f"{description} (≥)", required)


def at_most(name: str, value: float, threshold: float, description: str, required: bool = True) -> Criterion:
    return Criterion(name, float(value), threshold, bool(value <= threshold), f"{description} (≤)", required)


def clock_or_pizza_criteria(accuracy: float, symmetricity: float, irrelevance: float) -> list[Criterion]:
    return [at_least("accuracy", accuracy, 0.99, "model accuracy over all p² inputs"),
            at_least("gradient_symmetricity", symmetricity, 0.9, "gradient symmetricity", required=False),
            at_most("distance_irrelevance", irrelevance, 0.5, "distance irrelevance", required=False)]


def decide(criteria: list[Criterion]) -> str:
    """pizza if all required criteria pass; clock if the model is accurate but both indicators say clock."""
    if all(c.passed for c in criteria if c.required):
        return PIZZA
    by_name = {c.name: c for c in criteria}
    clock_like = (by_name["accuracy"].passed and not by_name["gradient_symmetricity"].passed
                  and not by_name["distance_irrelevance"].passed)
    return CLOCK if clock_like else DOES_NOT_FIT
