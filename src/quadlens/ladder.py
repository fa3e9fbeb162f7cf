"""The error ladder (THEORY §6): the model, then ever more idealised explanations of its MLP.

    L0  the model
    L1  every clustered neuron replaced by its amplitude–phase fit (key frequency, optionally + 2k), and
        every parity neuron (an even p) by its fit at p/2; dead and mixed neurons dropped
    L2  symmetrised (φ = φ', r = r'), phase-doubled (ψ = 2φ + ψ0) quadrature with the cluster's shared
        harmonic (β, λ) and each neuron's own offset c_i; parity neurons symmetrised (``quadlens.parity``)
    L3  the integral: each cluster's sum replaced by (W_k/2) C(κ_k, β_k, δ) cos(Δ − ψ0), the parity neurons by
        their vote P((a + b) mod 2) (−1)^c
    L∞  the closed form (κ = β = 0): Σ_k (W_k/3π) |cos(δ/2)| cos(Δ − ψ0), and L3's parity term

The direct path D_a + D_b is added exactly at every level. Each level's MLP can replace the model's
(ablation): we report accuracy, loss and worst margin over all p² inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial

import numpy as np

from .clusters import Cluster, lens_parameters
from .fourier import alternating, cosine, cosine_factors
from .lens import by_difference_and_step, cluster_lens_table
from .neurons import CLUSTERED, PARITY, NeuronFits
from .parity import Parity
from .tables import Factors, SeparableTables, row_chunks

Logits = Callable[[slice], np.ndarray]  # a level's logits for the inputs with a in the slice: [rows, p, p]


@dataclass(frozen=True)
class Rung:
    """A level to score: its logits, made a few rows a at a time, and the level ``after`` which its step error
    is measured (None: no step error)."""

    level: str
    harmonics: bool | None
    logits: Logits
    after: tuple[str, bool | None] | None = None


PER_INPUT = ("margin", "correct_logit", "mean_logit")  # the Level fields that hold one value per input


@dataclass(frozen=True)
class Level:
    """One rung, scored against the model over all p² inputs. Per input ``[p, p]``: its ``margin``, its
    ``correct_logit`` and its ``mean_logit`` over the p outputs; the ``[p, p, p]`` logits are never held whole (the
    tables the level is built from give them again)."""

    level: str
    harmonics: bool | None
    max_logit_diff_error: float = float("nan")
    step_error: float = float("nan")
    min_margin: float = float("nan")
    accuracy: float = float("nan")
    loss: float = float("nan")
    margin: np.ndarray | None = field(default=None, repr=False)
    correct_logit: np.ndarray | None = field(default=None, repr=False)
    mean_logit: np.ndarray | None = field(default=None, repr=False)

    @property
    def harmonics_label(self) -> str:
        """Which input harmonics the level's neurons are fitted with, as tables show it: ``k``, ``k, 2k`` or ``-``
        (the model itself)."""
        return {None: "-", False: "k", True: "k, 2k"}[self.harmonics]

    def summary(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in PER_INPUT}


@cache
def targets(p: int) -> np.ndarray:
    """The correct output (a + b) mod p per input ``[p, p]`` (read-only, made once per p: the ladder asks for it
    per level and chunk of rows)."""
    t = np.arange(p)
    index = (t[:, None] + t[None, :]) % p
    index.setflags(write=False)
    return index


@cache
def difference_index(p: int) -> np.ndarray:
    """(a − b) mod p per input ``[p, p]``: what a pizza's explanation depends on besides a + b (read-only, made
    once per p: every cluster group of a bound asks for it)."""
    t = np.arange(p)
    index = (t[:, None] - t[None, :]) % p
    index.setflags(write=False)
    return index


def by_sum_and_difference(values: np.ndarray) -> np.ndarray:
    """A per-input table ``[p, p]`` (a, b) rearranged over ((a + b) mod p, (a − b) mod p)."""
    p = values.shape[0]
    table = np.zeros((p, p))
    table[targets(p), difference_index(p)] = values
    return table


def correct_logits(logits: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
    """The logit of the correct output (a + b) mod p, ``[p, p]`` (or for the inputs with a in ``rows``)."""
    return np.take_along_axis(logits, targets(logits.shape[-1])[rows][..., None], -1)[..., 0]


def margins(logits: np.ndarray, rows: slice = slice(None), correct: np.ndarray | None = None) -> np.ndarray:
    """Correct logit minus the largest other logit, ``[p, p]`` (or for the inputs with a in ``rows``; ``correct``:
    their correct logits, where already known)."""
    p = logits.shape[-1]
    others = logits.copy()
    np.put_along_axis(others, targets(p)[rows][..., None], -np.inf, -1)
    return (correct_logits(logits, rows) if correct is None else correct) - others.max(-1)


class _Tally:
    """What ``score`` gathers for one rung as the chunks of rows go by."""

    def __init__(self, p: int):
        self.error, self.step = 0.0, 0.0
        self.margin, self.loss, self.correct, self.mean = (np.empty((p, p)) for _ in range(4))

    def add(self, rows: slice, chunk: np.ndarray, mean: np.ndarray, centred: np.ndarray, centred_model: np.ndarray,
            centred_previous: np.ndarray | None) -> None:
        largest = chunk.max(-1, keepdims=True)
        correct = correct_logits(chunk, rows)
        log_sum = np.log(np.exp(chunk - largest).sum(-1))  # logsumexp less the largest logit
        self.loss[rows] = log_sum - (correct - largest[..., 0])  # −log softmax at the correct output
        self.margin[rows] = margins(chunk, rows, correct)
        self.correct[rows], self.mean[rows] = correct, mean[..., 0]
        self.error = max(self.error, float(np.abs(centred - centred_model).max()))
        if centred_previous is not None:
            self.step = max(self.step, float(np.abs(centred - centred_previous).max()))

    def level(self, rung: Rung) -> Level:
        return Level(rung.level, rung.harmonics, max_logit_diff_error=self.error,
                     step_error=np.nan if rung.after is None else self.step, min_margin=float(self.margin.min()),
                     accuracy=float((self.margin > 0).mean()), loss=float(self.loss.mean()), margin=self.margin,
                     correct_logit=self.correct, mean_logit=self.mean)


def score(rungs: list[Rung], chunks: list[slice]) -> list[Level]:
    """Every rung's errors (in logit differences) against the first, the model's; its margins, accuracy and
    cross-entropy loss. All rungs go through the same chunks of rows a together, so that no ``[p, p, p]`` logits
    are ever held whole (0.76 GB each at p = 457)."""
    p = chunks[-1].stop
    tallies = [_Tally(p) for _ in rungs]
    wanted = {rung.after for rung in rungs}
    for rows in chunks:
        centred_chunks: dict[tuple[str, bool | None], np.ndarray] = {}
        centred_model = None
        for rung, tally in zip(rungs, tallies):
            chunk = rung.logits(rows)
            mean = chunk.mean(-1, keepdims=True)
            centred = chunk - mean
            centred_model = centred if centred_model is None else centred_model
            tally.add(rows, chunk, mean, centred, centred_model,
                      None if rung.after is None else centred_chunks[rung.after])
            if (rung.level, rung.harmonics) in wanted:
                centred_chunks[rung.level, rung.harmonics] = centred
    return [tally.level(rung) for rung, tally in zip(rungs, tallies)]


def fitted_tables(tables: SeparableTables, fits: NeuronFits, n_harmonics: int) -> SeparableTables:
    """L1: clustered and parity neurons as their fits, the others (dead, mixed) dropped."""
    return _fitted(tables, fits, n_harmonics)[0]


def _fitted(tables: SeparableTables, fits: NeuronFits, n_harmonics: int) -> tuple[SeparableTables, Factors]:
    """L1's tables, and its W_L's factors (``fitted_output``), of which the tables hold the product."""
    F_a, F_b = fits.inputs(n_harmonics)
    output = fitted_output(fits, n_harmonics)
    return dataclasses.replace(tables, F_a=F_a, F_b=F_b, W_L=output[0] @ output[1]), output


def fitted_output(fits: NeuronFits, n_harmonics: int) -> Factors:
    """L1's W_L (``fitted_tables``) as factors of low rank: one constant, and a cosine and a sine for each
    cluster's frequency and harmonic (and the parity neurons' (−1)^c)."""
    fitted = np.flatnonzero(np.isin(fits.status, (CLUSTERED, PARITY)))
    coefficients, basis = fits.output_factors(n_harmonics, fitted)
    return _on_rows(len(fits.status), fitted, coefficients), basis


def quadrature_tables(tables: SeparableTables, clusters: list[Cluster], harmonics: bool,
                      rules: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
                      parity: Parity | None = None) -> SeparableTables:
    """L2: each cluster as a symmetrised, phase-doubled quadrature, and the parity neurons symmetrised; ``rules``
    may replace nodes and weights."""
    return _quadrature(tables, clusters, harmonics, rules, parity)[0]


def _quadrature(tables: SeparableTables, clusters: list[Cluster], harmonics: bool,
                rules: dict[int, tuple[np.ndarray, np.ndarray]] | None,
                parity: Parity | None = None) -> tuple[SeparableTables, Factors]:
    """L2's tables, and its W_L's factors (``quadrature_output``), of which the tables hold the product."""
    p, m = tables.p, tables.d_mlp
    F, b_in = np.zeros((p, m)), np.zeros(m)
    for cluster in clusters:
        phi, _ = _rule(cluster, rules)
        k, r, idx = cluster.frequency, cluster.r, cluster.neurons
        F[:, idx] = cosine(p, k, r, phi)
        if harmonics:
            shape = cluster.shared_waveform()
            F[:, idx] += cosine(p, 2 * k, shape["beta"] * r, 2 * phi + shape["lock"])
        b_in[idx] = cluster.offset
    if parity is not None:
        F[:, parity.neurons] = np.outer(alternating(p), parity.amplitude)
        b_in[parity.neurons] = parity.offset
    output = quadrature_output(m, p, clusters, rules, parity)
    return dataclasses.replace(tables, F_a=F, F_b=F, b_in=b_in, W_L=output[0] @ output[1]), output


def quadrature_output(d_mlp: int, p: int, clusters: list[Cluster],
                      rules: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
                      parity: Parity | None = None) -> Factors:
    """L2's W_L (``quadrature_tables``) as factors of rank two per cluster, a cosine and a sine at its frequency,
    and of rank one for the parity neurons, (−1)^c."""
    coefficients, bases = [np.zeros((d_mlp, 0))], [np.zeros((0, p))]
    for cluster in clusters:
        phi, weights = _rule(cluster, rules)
        part, basis = cosine_factors(p, cluster.frequency, weights / (2 * cluster.r),
                                     2 * phi + cluster.shared_waveform()["psi0"])
        coefficients.append(_on_rows(d_mlp, cluster.neurons, part))
        bases.append(basis)
    if parity is not None:
        coefficients.append(_on_rows(d_mlp, parity.neurons, parity.weight[:, None]))
        bases.append(alternating(p)[None, :])
    return np.hstack(coefficients), np.vstack(bases)


def _rule(cluster: Cluster, rules: dict[int, tuple[np.ndarray, np.ndarray]] | None) -> tuple[np.ndarray, np.ndarray]:
    return (cluster.phi, cluster.weights) if rules is None else rules[cluster.frequency]


def _on_rows(count: int, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` placed at ``rows`` of ``count`` rows, zero elsewhere."""
    out = np.zeros((count, values.shape[1]))
    out[rows] = values
    return out


def quadrature_rung(level: str, tables: SeparableTables, clusters: list[Cluster], harmonics: bool,
                    rules: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
                    after: tuple[str, bool | None] | None = None, parity: Parity | None = None) -> Rung:
    """An L2 level to score, its logits through ``quadrature_output``."""
    return Rung(level, harmonics, _through(*_quadrature(tables, clusters, harmonics, rules, parity)), after)


def _through(tables: SeparableTables, output: Factors) -> Logits:
    """``tables``' logits a few rows at a time, their W_L taken through its factors ``output``."""
    return partial(tables.logits, W_L_factors=output)


def integral_logits(tables: SeparableTables, clusters: list[Cluster], harmonics: bool,
                    with_offsets: bool = True, rows: slice = slice(None), parity: Parity | None = None) -> np.ndarray:
    """L3 (or L∞ without offsets and harmonics): every cluster's integral and the parity term, plus the direct path.

    ``rows`` restricts the result to the inputs with a in that slice: ``[len(rows), p, p]``.
    """
    return integral_rows(tables, clusters, harmonics, with_offsets, parity)(rows)


def integral_rows(tables: SeparableTables, clusters: list[Cluster], harmonics: bool,
                  with_offsets: bool = True, parity: Parity | None = None) -> Logits:
    """``integral_logits`` as a function of the rows, from a table made once (a ladder's rung)."""
    table, t = integral_table(tables, clusters, harmonics, with_offsets, parity), np.arange(tables.p)
    return lambda rows: tables.D_a[rows][:, None, :] + tables.D_b[None, :, :] + by_difference_and_step(table, t, rows)


def integral_table(tables: SeparableTables, clusters: list[Cluster], harmonics: bool,
                   with_offsets: bool = True, parity: Parity | None = None) -> np.ndarray:
    """The MLP part of ``integral_logits`` by (a − b, a + b − c) mod p, on which alone it depends: ``[p, p]``
    (``lens.by_difference_and_step`` reads it out)."""
    table = np.zeros((tables.p, tables.p)) if parity is None else parity.table()
    for cluster in clusters:
        lens = lens_parameters(cluster, harmonics)
        table += cluster_lens_table(tables.p, cluster.frequency, cluster.total_weight, lens["psi0"],
                                    kappa=lens["kappa"] if with_offsets else 0.0, beta=lens["beta"],
                                    act_fn=tables.act_fn, scale=lens["scale"])
    return table


def model_rung(tables: SeparableTables) -> Rung:
    """L0, the model itself: the rung every other is scored against."""
    return Rung("L0", None, tables.logits)


def ladder_rungs(tables: SeparableTables, fits: NeuronFits, clusters: list[Cluster],
                 parity: Parity | None = None) -> list[Rung]:
    """L0, then L1 → L2 → L3 with and without the second harmonic (each with its step from the one before),
    then L∞."""
    rungs = [model_rung(tables)]
    for harmonics in (False, True):
        rungs += [Rung("L1", harmonics, _through(*_fitted(tables, fits, 1 + harmonics)), ("L0", None)),
                  quadrature_rung("L2", tables, clusters, harmonics, after=("L1", harmonics), parity=parity),
                  Rung("L3", harmonics, integral_rows(tables, clusters, harmonics, parity=parity), ("L2", harmonics))]
    return rungs + [Rung("Linf", False, integral_rows(tables, clusters, False, with_offsets=False, parity=parity))]


def error_ladder(tables: SeparableTables, rungs: list[Rung], chunk_elements: int = 1 << 22) -> list[Level]:
    """The rungs scored, in the chunks of rows that ``SeparableTables.logits`` works in."""
    return score(rungs, row_chunks(tables.p, tables.p * tables.d_mlp, chunk_elements))


def margin_by_difference(margin: np.ndarray) -> np.ndarray:
    """Worst margin ``[p, p]`` for each a − b (mod p): ``[p]``."""
    difference = difference_index(margin.shape[0])
    return np.array([margin[difference == d].min() for d in range(margin.shape[0])])
