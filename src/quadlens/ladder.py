"""The error ladder (THEORY §6): the model, then ever more idealised explanations of its MLP.

    L0  the model
    L1  every clustered neuron replaced by its amplitude–phase fit (key frequency, optionally + 2k);
        dead and mixed neurons dropped
    L2  symmetrised (φ = φ', r = r'), phase-doubled (ψ = 2φ + ψ0) quadrature with the cluster's shared
        harmonic (β, λ) and each neuron's own offset c_i
    L3  the integral: each cluster's sum replaced by (W_k/2) C(κ_k, β_k, δ) cos(Δ − ψ0)
    L∞  the closed form (κ = β = 0): Σ_k (W_k/3π) |cos(δ/2)| cos(Δ − ψ0)

The direct path D_a + D_b is added exactly at every level. Each level's MLP can replace the model's
(ablation): we report accuracy, loss and worst margin over all p² inputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache

import numpy as np

from .clusters import Cluster, lens_parameters
from .fourier import cosine
from .lens import by_difference_and_step, cluster_lens_table
from .neurons import CLUSTERED, NeuronFits
from .tables import SeparableTables, row_chunks


# The levels whose logits an explanation keeps: the model, the fits (explain's margins by difference) and the two
# that the logits figure draws beside the model. Every other level's are dropped once it is scored, so that explain
# holds five [p, p, p] arrays, not twelve (0.76 GB each at p = 457).
KEPT_LOGITS = {("L0", None), ("L1", False), ("L1", True), ("L3", True), ("Linf", False)}


@dataclass(frozen=True)
class Level:
    """One rung: its logits ``[p, p, p]`` (None once scored, but for ``KEPT_LOGITS``: the tables the level is built
    from give them again) and how they compare with the model's."""

    level: str
    harmonics: bool | None
    logits: np.ndarray | None
    max_logit_diff_error: float = float("nan")
    step_error: float = float("nan")
    min_margin: float = float("nan")
    accuracy: float = float("nan")
    loss: float = float("nan")

    @property
    def harmonics_label(self) -> str:
        """Which input harmonics the level's neurons are fitted with, as tables show it: ``k``, ``k, 2k`` or ``-``
        (the model itself)."""
        return {None: "-", False: "k", True: "k, 2k"}[self.harmonics]

    def summary(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "logits"}


def targets(p: int) -> np.ndarray:
    """The correct output (a + b) mod p per input ``[p, p]``."""
    t = np.arange(p)
    return (t[:, None] + t[None, :]) % p


@cache
def difference_index(p: int) -> np.ndarray:
    """(a − b) mod p per input ``[p, p]``: what a pizza's explanation depends on besides a + b (read-only, made
    once per p: every cluster group of a bound asks for it)."""
    t = np.arange(p)
    index = (t[:, None] - t[None, :]) % p
    index.setflags(write=False)
    return index


def margins(logits: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
    """Correct logit minus the largest other logit, ``[p, p]`` (or for the inputs with a in ``rows``)."""
    p = logits.shape[-1]
    y = targets(p)[rows][..., None]
    correct = np.take_along_axis(logits, y, -1)[..., 0]
    others = logits.copy()
    np.put_along_axis(others, y, -np.inf, -1)
    return correct - others.max(-1)


def centred(logits: np.ndarray) -> np.ndarray:
    return logits - logits.mean(-1, keepdims=True)


def score(level: Level, model_logits: np.ndarray, previous: np.ndarray | None, chunk_elements: int = 1 << 22) -> Level:
    """Fill in a level's errors (in logit differences), margin, accuracy and cross-entropy loss; a few rows a at
    a time, so that the temporaries stay small beside the ``[p, p, p]`` logits."""
    logits = level.logits
    p = logits.shape[-1]
    error, step, margin, loss = 0.0, 0.0, np.empty((p, p)), np.empty((p, p))
    for rows in row_chunks(p, p * p, chunk_elements):
        chunk = logits[rows]
        shifted = chunk - chunk.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        loss[rows] = -np.take_along_axis(log_probs, targets(p)[rows][..., None], -1)[..., 0]
        margin[rows] = margins(chunk, rows)
        error = max(error, float(np.abs(centred(chunk) - centred(model_logits[rows])).max()))
        if previous is not None:
            step = max(step, float(np.abs(centred(chunk) - centred(previous[rows])).max()))
    return dataclasses.replace(level, max_logit_diff_error=error, step_error=np.nan if previous is None else step,
                               min_margin=float(margin.min()), accuracy=float((margin > 0).mean()),
                               loss=float(loss.mean()))


def scored(level: str, harmonics: bool | None, logits: np.ndarray, model_logits: np.ndarray,
           previous: np.ndarray | None) -> Level:
    """The level scored (``score``), keeping its logits only if it is one of ``KEPT_LOGITS``."""
    scored_level = score(Level(level, harmonics, logits), model_logits, previous)
    return scored_level if (level, harmonics) in KEPT_LOGITS else dataclasses.replace(scored_level, logits=None)


def fitted_tables(tables: SeparableTables, fits: NeuronFits, n_harmonics: int) -> SeparableTables:
    """L1: clustered neurons as their fits, the others dropped."""
    F_a, F_b = fits.inputs(n_harmonics)
    keep = (fits.status == CLUSTERED).astype(float)
    return dataclasses.replace(tables, F_a=F_a, F_b=F_b, W_L=fits.outputs(n_harmonics) * keep[:, None])


def quadrature_tables(tables: SeparableTables, clusters: list[Cluster], harmonics: bool,
                      rules: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> SeparableTables:
    """L2: each cluster as a symmetrised, phase-doubled quadrature; ``rules`` may replace nodes and weights."""
    p, m = tables.p, tables.d_mlp
    F, b_in, W_L = np.zeros((p, m)), np.zeros(m), np.zeros((m, p))
    for cluster in clusters:
        phi, weights = (cluster.phi, cluster.weights) if rules is None else rules[cluster.frequency]
        k, r, idx = cluster.frequency, cluster.r, cluster.neurons
        shape = cluster.shared_waveform()
        F[:, idx] = cosine(p, k, r, phi)
        if harmonics:
            F[:, idx] += cosine(p, 2 * k, shape["beta"] * r, 2 * phi + shape["lock"])
        b_in[idx] = cluster.offset
        W_L[idx, :] = cosine(p, k, weights / (2 * r), 2 * phi + shape["psi0"]).T
    return dataclasses.replace(tables, F_a=F, F_b=F, b_in=b_in, W_L=W_L)


def integral_logits(tables: SeparableTables, clusters: list[Cluster], harmonics: bool,
                    with_offsets: bool = True, rows: slice = slice(None)) -> np.ndarray:
    """L3 (or L∞ without offsets and harmonics): every cluster's integral, plus the direct path.

    ``rows`` restricts the result to the inputs with a in that slice: ``[len(rows), p, p]``.
    """
    mlp = by_difference_and_step(integral_table(tables, clusters, harmonics, with_offsets), np.arange(tables.p), rows)
    return tables.D_a[rows][:, None, :] + tables.D_b[None, :, :] + mlp


def integral_table(tables: SeparableTables, clusters: list[Cluster], harmonics: bool,
                   with_offsets: bool = True) -> np.ndarray:
    """The MLP part of ``integral_logits`` by (a − b, a + b − c) mod p, on which alone it depends: ``[p, p]``
    (``lens.by_difference_and_step`` reads it out)."""
    table = np.zeros((tables.p, tables.p))
    for cluster in clusters:
        lens = lens_parameters(cluster, harmonics)
        table += cluster_lens_table(tables.p, cluster.frequency, cluster.total_weight, lens["psi0"],
                                    kappa=lens["kappa"] if with_offsets else 0.0, beta=lens["beta"],
                                    act_fn=tables.act_fn, scale=lens["scale"])
    return table


def error_ladder(tables: SeparableTables, fits: NeuronFits, clusters: list[Cluster]) -> list[Level]:
    """L0, then L1 → L2 → L3 with and without the second harmonic, then L∞; each level scored, one at a time."""
    model = tables.logits()
    levels = [scored("L0", None, model, model, None)]
    for harmonics in (False, True):
        previous = model
        for name in ("L1", "L2", "L3"):
            logits = _level_logits(name, tables, fits, clusters, harmonics)
            levels.append(scored(name, harmonics, logits, model, previous))
            previous = logits
    levels.append(scored("Linf", False, integral_logits(tables, clusters, False, with_offsets=False), model, None))
    return levels


def _level_logits(name: str, tables: SeparableTables, fits: NeuronFits, clusters: list[Cluster],
                  harmonics: bool) -> np.ndarray:
    if name == "L1":
        return fitted_tables(tables, fits, 1 + harmonics).logits()
    if name == "L2":
        return quadrature_tables(tables, clusters, harmonics).logits()
    return integral_logits(tables, clusters, harmonics)


def margin_by_difference(logits: np.ndarray) -> np.ndarray:
    """Worst margin for each a − b (mod p): ``[p]``."""
    p = logits.shape[-1]
    t = np.arange(p)
    difference = (t[:, None] - t[None, :]) % p
    margin = margins(logits)
    return np.array([margin[difference == d].min() for d in range(p)])
