"""The task: a + b mod p over all p² pairs, with a train/test split fixed by a seed."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .checks import is_whole_number


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % q for q in range(2, int(n**0.5) + 1))


MAX_MODULUS = 100_000  # far beyond what fits: p² inputs, p³ logits


def check_modulus(p: int) -> None:
    """Refuse a modulus the task cannot use; warn when it is not prime (the Fourier picture assumes a field)."""
    if not is_whole_number(p):
        raise TypeError(f"p must be a whole number, got {type(p).__name__} ({p!r})")
    if p < 3:
        raise ValueError(f"p must be at least 3, got p={p}")
    if p > MAX_MODULUS:
        raise ValueError(f"p must be at most {MAX_MODULUS:,} (the task has p² inputs), got p={p}")
    if not is_prime(p):
        warnings.warn(f"p={p} is not prime: a frequency k that shares a factor with p takes only p/gcd(k, p) phases, "
                      f"so an explanation may not fit (the bounds stay sound)", stacklevel=3)


def all_pairs(p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every input (a, b) in row-major order (index a·p + b): two ``[p²]`` tensors."""
    return torch.arange(p).repeat_interleave(p), torch.arange(p).repeat(p)


@dataclass(frozen=True)
class ModularAddition:
    """All p² inputs (a, b) with target (a + b) mod p, enumerated row-major: index = a·p + b."""

    p: int

    def __post_init__(self) -> None:
        check_modulus(self.p)
        object.__setattr__(self, "p", int(self.p))  # numpy's integers as a plain int

    @property
    def a(self) -> torch.Tensor:
        return all_pairs(self.p)[0]

    @property
    def b(self) -> torch.Tensor:
        return all_pairs(self.p)[1]

    @property
    def targets(self) -> torch.Tensor:
        return (self.a + self.b) % self.p

    def split(self, seed: int, train_fraction: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted train and test pair indices; the same seed always gives the same split."""
        n_train = train_size(self.p, train_fraction)
        generator = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(self.p * self.p, generator=generator)
        return order[:n_train].sort().values, order[n_train:].sort().values


def train_size(p: int, train_fraction: float) -> int:
    """Number of training pairs; refuses a fraction that leaves either side empty."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    n_train = int(round(train_fraction * p * p))
    if not 0 < n_train < p * p:
        raise ValueError(f"train_fraction={train_fraction} leaves an empty train or test set at p={p}")
    return n_train
