"""The explanation's margins, the other side of the certificate (docs/bounds.md §3b).

For each input, the J outputs nearest to beating a+b under the explanation are listed, with the explanation's
exact margin to each (direct path included) and a lower bound on its margin to every other output; every tier
then checks the listed outputs one by one, adding the error's exact tracked difference there less the rest.
``Competitors.exact_margin`` is the explanation's margin itself, every output compared (O(p³)), for the
quadratic tiers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from .clusters import Cluster
from .ladder import difference_index, integral_table, targets
from .ops import Ops
from .parity import Parity
from .tables import SeparableTables

COMPETITORS = 32  # outputs per input checked one by one: exact explanation margin against the error difference there


def explanation_margins_by_difference(tables: SeparableTables, clusters: list[Cluster], ops: Ops,
                                      parity: Parity | None = None) -> np.ndarray:
    """The explanation's MLP logit difference (a+b) − c per a − b and j = a+b − c ≠ 0: ``[p, p − 1]``, O(p²K)."""
    logits = integral_table(tables, clusters, harmonics=True, parity=parity)  # [a − b, j]
    ops((len(clusters) + (parity is not None)) * (30 * tables.p + 4 * tables.p ** 2) + tables.p ** 2)
    return logits[:, :1] - logits[:, 1:]


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
        return (targets(p)[..., None] - self.steps[difference_index(p)]) % p

    def margins(self, inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The explanation's exact margin to each listed output: ``[p, p, J]``, or ``[n, J]`` at the inputs (a, b)."""
        if inputs is not None:  # contiguous, so that one compiled signature serves every call
            a, b = (np.ascontiguousarray(x, dtype=np.int64) for x in inputs)
            return _competitor_margins(self.by_difference, self.steps, self.D_a, self.D_b, a, b)
        p = len(self.steps)
        a, b = np.divmod(np.arange(p * p), p)
        return _competitor_margins(self.by_difference, self.steps, self.D_a, self.D_b, a, b).reshape(p, p, -1)

    def lower_bound(self) -> np.ndarray:
        """A lower bound on the explanation's margin over all outputs ``[p, p]``."""
        return np.minimum(_nearest_margin(self.by_difference, self.steps, self.D_a, self.D_b), self.others)

    def exact_margin(self, ops: Ops) -> np.ndarray:
        """The explanation's margin with the exact direct path ``[p, p]``: every output compared, O(p³)."""
        p = len(self.steps)
        ops(8 * p * p * (p - 1))
        return _nearest_margin(self.by_difference, _every_step(p), self.D_a, self.D_b)

    def proven_model_margin(self, gains: np.ndarray, least_gain: np.ndarray,
                            inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """A lower bound on the model's margin, given lower bounds on err(a+b) − err(c) at the listed outputs
        (``gains`` ``[p, p, J]``) and at every output (``least_gain`` ``[p, p]``); with ``inputs`` (a, b), on those
        inputs only (``gains`` ``[n, J]``)."""
        where = slice(None) if inputs is None else inputs
        return np.minimum((self.margins(inputs) + gains).min(-1, initial=np.inf),
                          self.others[where] + least_gain[where])


def nearest_competitors(tables: SeparableTables, clusters: list[Cluster], ops: Ops,
                        competitors: int = COMPETITORS, parity: Parity | None = None) -> Competitors:
    """The J = ``competitors`` outputs per input with the smallest explanation MLP margin, in O(p²(K + J)).

    The MLP part depends on (a − b, j = a+b − c) only, so the J are chosen per a − b and compared exactly,
    direct path included. Every other output has at least the (J+1)-th smallest MLP margin plus the direct
    path's worst case split in two, D_a[a, a+b] − max_c D_a[a, c] plus the same for D_b. Its ``lower_bound``
    is the separable bound alone for ``competitors=0`` and the exact margin for ``competitors ≥ p − 1``.
    """
    p = tables.p
    by_difference = explanation_margins_by_difference(tables, clusters, ops, parity)  # [δ, j − 1]
    J = min(competitors, p - 1)
    rows = np.arange(p)
    difference, target = difference_index(p), targets(p)
    if J == p - 1:
        others = np.full((p, p), np.inf)
        nearest = _every_step(p)
    else:
        direct = ((tables.D_a[rows[:, None], target] - tables.D_a.max(1)[:, None])
                  + (tables.D_b[rows[None, :], target] - tables.D_b.max(1)[None, :]))
        others = np.partition(by_difference, J, axis=1)[:, J][difference] + direct
        nearest = np.argpartition(by_difference, J - 1, axis=1)[:, :J] + 1 if J else np.zeros((p, 0), int)
        ops(7 * p * p)
    ops(8 * p * p * J + p * p * np.log2(max(p, 2)))  # each listed margin, formed once for the lower bound
    return Competitors(nearest, by_difference, tables.D_a, tables.D_b, others)


def _every_step(p: int) -> np.ndarray:
    """Every j = 1 … p − 1 listed for every difference a − b ``[p, p − 1]``: all outputs compared."""
    return np.arange(1, p)[None].repeat(p, 0)


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
