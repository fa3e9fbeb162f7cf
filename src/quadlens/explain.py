"""``explain``: compress a constant-attention model's MLP into a quadrature scheme, and say when it does not fit.

Data flow: model → separable tables → neuron fits → clusters → quadrature rules, lens and error ladder
→ criteria and verdict. :class:`Explanation` holds it all; :meth:`Explanation.to_dict` is ``explain.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import __version__
from .clusters import Cluster, build_clusters, lens_parameters
from .files import json_ready
from .ladder import (Level, Rung, correct_logits, error_ladder, ladder_rungs, margin_by_difference, margins,
                     model_rung, quadrature_rung)
from .lens import INTEGRAL_CONSTANT, LENS_POINTS, lobe_integral
from .model import Transformer
from .neurons import CLUSTERED, DEAD, MIXED, PARITY, NeuronFits, fit_neurons
from .parity import Parity, fit_parity
from .quadrature import RuleError, baseline_rules, evaluate_rule, input_angles
from .tables import SeparableTables, separable_tables
from .text import percent
from .verdict import (PIZZA, Criterion, at_least, at_most, clock_or_pizza_criteria, decide, distance_irrelevance,
                      gradient_symmetricity)

SCHEMA = "quadlens.explain"
SCHEMA_VERSION = 4  # 2: a harmonic that falls on the key frequency modulo p (p = 3k) is not fitted twice;
# 3: each cluster's input angles and its rule's gain; a harmonic at the Nyquist frequency p/2 fitted right;
# 4: L2, L3 and L∞ keep the parity neurons (an even p) as the parity term, and "parity" describes it
BLIND_SPOT = 0.25  # |cos(ωk(a−b)/2)| below this: the cluster barely sees the input


@dataclass
class ClusterReport:
    """A cluster with its quadrature errors (model rule and baselines) and blind spots."""

    cluster: Cluster
    rule: RuleError
    baselines: dict[str, RuleError]
    blind_spots: list[int]
    input_angles: int
    lobe_integral: float = INTEGRAL_CONSTANT

    def cells(self) -> list[str]:
        """The cluster's row in the explanation's tables (terminal and report): frequency, neurons, W_k, doubling and
        φ−φ' resultants (to five and four decimals: they sit near 1), the waveform's β and κ, and the quadrature error
        of its own rule, of equal weights and of evenly spaced nodes."""
        c, shape = self.cluster, self.cluster.shared_waveform()
        rules = (self.rule, self.baselines["equal_weights"], self.baselines["evenly_spaced"])
        return [str(c.frequency), str(len(c.neurons)), f"{c.total_weight:.1f}", f"{c.doubling_resultant:.5f}",
                f"{c.symmetry_resultant:.4f}", f"{shape['beta']:.3f}", f"{shape['kappa']:.3f}",
                *(f"{100 * rule.continuous_rel:.1f}%" for rule in rules)]

    def few_angles_note(self, p: int) -> str | None:
        """Why a cluster whose frequency shares a factor with p can have a large quadrature error, measured: None
        where its neurons see all p input angles, or where the error is not mostly a gain."""
        k, rule = self.cluster.frequency, self.rule
        if self.input_angles == p or abs(rule.gain_rel) <= rule.reachable_after_gain_rel:
            return None
        return (f"k = {k} shares a factor with p = {p}, so its neurons see only {self.input_angles} input angles. "
                f"Its rule errs by {100 * rule.continuous_rel:.1f} % against the integral, but averaged over the "
                f"offsets the inputs reach it scales the cluster's vote by {100 * rule.gain_rel:+.1f} %, a gain that "
                f"does not bend the vote; beyond that gain it errs by at most "
                f"{100 * rule.reachable_after_gain_rel:.1f} %.")

    def to_dict(self, fits: NeuronFits) -> dict:
        c, idx = self.cluster, self.cluster.neurons
        shape = c.shared_waveform()
        return {
            "frequency": c.frequency, "neurons": idx.tolist(), "n_neurons": len(idx),
            "total_weight": c.total_weight,
            "key_share_median": {"F_a": float(np.median(fits.share_a[idx])), "F_b": float(np.median(fits.share_b[idx])),
                                 "W_L": float(np.median(fits.share_L[idx]))},
            "doubling_resultant": c.doubling_resultant, "doubling_mean": c.doubling_mean,
            "symmetry_resultant": c.symmetry_resultant, "symmetry_mean": c.symmetry_mean,
            "amplitude_ratio_b_over_a": {"mean": c.amplitude_ratio.mean, "std": c.amplitude_ratio.spread},
            "harmonic_ratio": {"weighted_mean": shape["beta"], "std": float(c.harmonic_ratio.std())},
            "harmonic_lock": {"mean": shape["lock"],
                              "resultant": float(abs(np.mean(np.exp(1j * c.harmonic_lock))))},
            "offset_ratio": {"weighted_median": shape["kappa"], "std": float(c.offset_ratio.std())},
            "psi0": shape["psi0"],
            "nodes": c.phi.tolist(), "weights": c.weights.tolist(),
            "quadrature_error_rel": self.rule.continuous_rel,
            "quadrature_error_reachable_rel": self.rule.reachable_rel,
            "quadrature_error_uncertainty": self.rule.continuous_rel_uncertainty,
            "input_angles": self.input_angles, "quadrature_gain_rel": self.rule.gain_rel,
            "quadrature_error_reachable_after_gain_rel": self.rule.reachable_after_gain_rel,
            "baselines": {name: {"quadrature_error_rel": r.continuous_rel, "quadrature_error_reachable_rel": r.reachable_rel}
                          for name, r in self.baselines.items()},
            "blind_spots": self.blind_spots,
            "lobe_integral": self.lobe_integral, "lobe_integral_over_relu": self.lobe_integral / INTEGRAL_CONSTANT,
        }


@dataclass
class Explanation:
    """Everything ``quadlens explain`` finds; arrays for figures, :meth:`to_dict` for JSON."""

    model_config: dict
    accuracy: float
    verdict: str
    criteria: list[Criterion]
    gradient_symmetricity: float
    distance_irrelevance: float
    seconds: float = 0.0
    tables: SeparableTables | None = None
    fits: NeuronFits | None = None
    clusters: list[ClusterReport] = field(default_factory=list)
    parity: Parity | None = None
    ladder: list[Level] = field(default_factory=list)
    ablation: list[Level] = field(default_factory=list)
    margin_by_difference: dict[str, np.ndarray] = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # ``Transformer.identity``: which model was explained

    def __repr__(self) -> str:
        """One line for notebooks and logs: the full content, arrays included, is :meth:`to_dict` and the fields."""
        cfg = self.model_config
        parts = [f"p={cfg['p']}", f"d_mlp={cfg['d_mlp']}", f"verdict={self.verdict!r}",
                 f"accuracy={percent(self.accuracy, 2)}"]
        if self.fits_picture:
            parts += [f"clusters={[report.cluster.frequency for report in self.clusters]}",
                      f"L3_min_margin={self.level('L3', True).min_margin:.3g}"]
        else:
            parts.append(f"reasons={self.reasons}")
        return f"Explanation({', '.join(parts)})"

    def _repr_html_(self) -> str:
        """What a notebook shows: the verdict and the tables of ``quadlens report``, without its figures
        (``quadlens.figures`` draws them)."""
        from .report import explanation_html

        return explanation_html(self)

    @property
    def fits_picture(self) -> bool:
        return self.verdict == PIZZA

    @property
    def reasons(self) -> list[str]:
        return [c.reason() for c in self.criteria if not c.passed]

    def few_angles_notes(self) -> list[str]:
        """For each cluster whose frequency shares a factor with p, why its quadrature error can be large."""
        notes = (report.few_angles_note(self.model_config["p"]) for report in self.clusters)
        return [note for note in notes if note is not None]

    def _parity_influence(self) -> float:
        """The parity neurons' share of all neurons' influence."""
        influence = self.fits.influence
        return float(influence[self.fits.status == PARITY].sum() / max(influence.sum(), 1e-300))

    def parity_note(self) -> str | None:
        """How the explanation keeps the neurons that read and write parity (an even p), or None."""
        if self.parity is None:
            return None
        even, odd = self.parity.by_sum()
        return (f"{len(self.parity.neurons)} neurons read the parity of a and b and write that of c (the Nyquist "
                f"frequency p/2 = {self.model_config['p'] // 2}), with {percent(self._parity_influence())} of the "
                f"neurons' influence. The explanation keeps them as a parity term beside the clusters: at L3 it adds "
                f"{even:.2f} (a + b even) or {odd:.2f} (a + b odd) times (−1)^c to every logit.")

    def _parity_content(self) -> dict:
        """``explain.json``'s ``parity``: each parity neuron's index, amplitude, offset and weight, and L3's votes."""
        term = self.parity
        even, odd = term.by_sum()
        return {"neurons": term.neurons.tolist(), "amplitude": term.amplitude.tolist(), "offset": term.offset.tolist(),
                "weight": term.weight.tolist(), "vote_a_plus_b_even": float(even), "vote_a_plus_b_odd": float(odd)}

    def level(self, name: str, harmonics: bool | None) -> Level:
        """The ladder's level ``name`` (L0, L1, L2, L3, Linf), with or without the second harmonic."""
        found = [lv for lv in self.ladder if lv.level == name and lv.harmonics == harmonics]
        if not found:
            raise ValueError(f"no level {name} (harmonics={harmonics}) in this explanation: {self.no_picture()}"
                             if not self.fits_picture else
                             f"no level {name} (harmonics={harmonics}); the ladder has "
                             f"{sorted({(lv.level, lv.harmonics) for lv in self.ladder}, key=str)}")
        return found[0]

    def no_picture(self) -> str:
        """Why a model the picture does not fit has no clusters, ladder or figures: its verdict and reasons."""
        return f"the quadrature picture does not fit this model (verdict {self.verdict!r}): {'; '.join(self.reasons)}"

    def to_dict(self) -> dict:
        """The content of ``explain.json`` (strict JSON types; non-finite numbers as None)."""
        return json_ready(self._content())

    def _content(self) -> dict:
        out = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "quadlens_version": __version__,
            "model": self.model or None, "model_config": self.model_config, "accuracy": self.accuracy,
            "verdict": self.verdict,
            "fits_quadrature_picture": self.fits_picture, "reasons": self.reasons,
            "criteria": [vars(c) for c in self.criteria],
            "gradient_symmetricity": self.gradient_symmetricity, "distance_irrelevance": self.distance_irrelevance,
            "seconds": self.seconds,
            "lens": {"activation": self.model_config["act_fn"], "integral_constant": INTEGRAL_CONSTANT,
                     "method": ("exact: piecewise antiderivatives between the roots of the relu's argument"
                                if self.model_config["act_fn"] == "relu" else
                                f"periodic trapezoid rule on {LENS_POINTS} points at each cluster's amplitude r̄"),
                     "tested_accuracy": 1e-9},
            "clusters": [], "parity": None, "ladder": [], "ablation": [], "neurons": None, "secondary": None,
        }
        if not self.fits_picture:
            return out
        fits = self.fits
        out["neurons"] = {"n_total": len(fits.status),
                          **{f"n_{s}": int((fits.status == s).sum()) for s in (CLUSTERED, DEAD, MIXED, PARITY)},
                          "dead": np.where(fits.status == DEAD)[0].tolist(),
                          "mixed": np.where(fits.status == MIXED)[0].tolist(),
                          "parity": np.where(fits.status == PARITY)[0].tolist(),
                          "parity_influence_share": self._parity_influence(),
                          "key_share_median": float(np.median(fits.share_a[fits.status != DEAD]))}
        out["clusters"] = [report.to_dict(fits) for report in self.clusters]
        out["parity"] = None if self.parity is None else self._parity_content()
        out["ladder"] = [level.summary() for level in self.ladder]
        out["ablation"] = [level.summary() for level in self.ablation]
        with_h, without_h = self.level("L1", True), self.level("L1", False)
        out["secondary"] = {
            "with_second_harmonic": {"accuracy": with_h.accuracy, "min_margin": with_h.min_margin},
            "key_frequency_only": {"accuracy": without_h.accuracy, "min_margin": without_h.min_margin},
            "margin_by_difference": {k: v.tolist() for k, v in self.margin_by_difference.items()},
        }
        return out


def _cluster_report(cluster: Cluster, p: int, act_fn: str) -> ClusterReport:
    """Quadrature errors (integrand act(s cos θ)/s · cos 2θ at the cluster's amplitude s = 2r̄) and blind spots."""
    d = np.arange(p)
    blind = np.abs(np.cos(np.pi * cluster.frequency * d / p)) < BLIND_SPOT
    scale = 2 * lens_parameters(cluster)["scale"]
    return ClusterReport(
        cluster=cluster, rule=evaluate_rule(cluster.phi, cluster.weights, p, cluster.frequency, act_fn, scale),
        baselines={name: evaluate_rule(ph, w, p, cluster.frequency, act_fn, scale)
                   for name, (ph, w) in baseline_rules(cluster.phi, cluster.weights).items()},
        blind_spots=d[blind].tolist(), input_angles=input_angles(p, cluster.frequency),
        lobe_integral=lobe_integral(act_fn, scale))


def _ablation_rungs(tables: SeparableTables, clusters: list[Cluster], parity: Parity | None) -> list[Rung]:
    """L2 with the model's rule swapped for each baseline rule of the same total weight."""
    rungs = []
    for name in ("equal_weights", "evenly_spaced"):
        rules = {c.frequency: baseline_rules(c.phi, c.weights)[name] for c in clusters}
        rungs += [quadrature_rung(f"L2 {name}", tables, clusters, harmonics, rules, parity=parity)
                  for harmonics in (False, True)]
    return rungs


def explain(model: Transformer, n_harmonics: int = 2, min_share: float = 0.5) -> Explanation:
    """Explain ``model``'s MLP as a quadrature scheme, or say which criterion it fails."""
    if n_harmonics < 2:
        raise ValueError(f"n_harmonics must be at least 2: the error ladder compares the key frequency alone with "
                         f"it and its second harmonic; got {n_harmonics}")
    start = time.perf_counter()
    symmetricity = gradient_symmetricity(model)
    if model.cfg.attention_kind != "constant":
        with torch.no_grad():
            logits = model.all_logits(torch.float64).numpy()
        acc, irrelevance = float((margins(logits) > 0).mean()), distance_irrelevance(correct_logits(logits))
        criteria = clock_or_pizza_criteria(acc, symmetricity, irrelevance)
        criteria.append(at_least("constant_attention", model.cfg.attention_rate, 1.0,
                                 "attention rate ρ (the separable tables need constant attention)"))
        return Explanation(model.cfg.to_dict(), acc, decide(criteria), criteria, symmetricity, irrelevance,
                           time.perf_counter() - start, model=model.identity())
    tables = separable_tables(model)
    fits = fit_neurons(tables, n_harmonics=n_harmonics, min_share=min_share)
    clusters, parity = build_clusters(fits, tables.b_in), fit_parity(fits, tables.b_in)
    # The ablation is scored with the ladder, in the same pass over the model's logits, and kept for a pizza.
    ladder, ablation = ((ladder_rungs(tables, fits, clusters, parity), _ablation_rungs(tables, clusters, parity))
                        if clusters else ([model_rung(tables)], []))
    levels = error_ladder(tables, ladder + ablation)
    ladder, ablation = levels[:len(ladder)], levels[len(ladder):]
    model_level = ladder[0]
    irrelevance = distance_irrelevance(model_level.correct_logit)
    criteria = clock_or_pizza_criteria(model_level.accuracy, symmetricity, irrelevance)
    criteria += _structure_criteria(fits, clusters, ladder)
    explanation = Explanation(model.cfg.to_dict(), model_level.accuracy, decide(criteria), criteria, symmetricity,
                              irrelevance, model=model.identity())
    if explanation.fits_picture:
        explanation.tables, explanation.fits, explanation.ladder, explanation.parity = tables, fits, ladder, parity
        explanation.clusters = [_cluster_report(c, tables.p, tables.act_fn) for c in clusters]
        explanation.ablation = ablation
        explanation.margin_by_difference = {
            "model": margin_by_difference(model_level.margin),
            "L1_key_frequency_only": margin_by_difference(explanation.level("L1", False).margin),
            "L1_with_second_harmonic": margin_by_difference(explanation.level("L1", True).margin)}
    explanation.seconds = time.perf_counter() - start
    return explanation


def _structure_criteria(fits: NeuronFits, clusters: list[Cluster], ladder: list[Level]) -> list[Criterion]:
    alive = fits.status != DEAD
    clustered_influence = fits.influence[fits.status == CLUSTERED].sum() / max(fits.influence.sum(), 1e-300)
    quadrature = [lv for lv in ladder if lv.level == "L2" and lv.harmonics]
    return [
        at_least("clusters", len(clusters), 1, "number of frequency clusters"),
        at_most("dead_neurons", (fits.status == DEAD).mean(), 0.1,
                "share of dead neurons (a dead cluster leaves its nodes out of the quadrature)"),
        at_least("clustered_influence", clustered_influence, 0.9, "share of neuron influence inside clusters"),
        at_least("key_frequency_share", np.median(fits.share_a[alive]) if alive.any() else 0.0, 0.8,
                 "median share of a live neuron's F_a energy at its key frequency"),
        at_least("phase_doubling", min((c.doubling_resultant for c in clusters), default=0.0), 0.9,
                 "smallest cluster resultant of e^{i(ψ−2φ)}"),
        at_least("explanation_accuracy", quadrature[0].accuracy if quadrature else 0.0, 0.99,
                 "accuracy with the MLP replaced by the quadrature explanation (L2, with harmonics)"),
    ]
