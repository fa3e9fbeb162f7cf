import numpy as np

from quadlens.lens import INTEGRAL_CONSTANT
from quadlens.quadrature import baseline_rules, evaluate_rule, reachable_offsets, rule_error


def brute_force_error(phases, weights, x, n_delta=2001):
    delta = np.linspace(0, 2 * np.pi, n_delta)
    u = x + phases
    rule = (weights[:, None] * np.maximum(np.cos(u), 0)[:, None] * np.cos(2 * u[:, None] - delta[None, :])).sum(0)
    return np.abs(rule - weights.sum() * INTEGRAL_CONSTANT * np.cos(delta)).max()


def test_error_formula_is_the_sup_over_delta():
    rng = np.random.default_rng(0)
    phases, weights = rng.uniform(-np.pi, np.pi, 17), rng.uniform(0.5, 2, 17)
    for x in rng.uniform(0, 2 * np.pi, 10):
        assert abs(rule_error(phases, weights, np.array([x]))[0] - brute_force_error(phases, weights, x)) < 1e-5


def test_evenly_spaced_rules_converge():
    errors = []
    for n in (8, 32, 128):
        phases, weights = baseline_rules(np.zeros(n), np.ones(n))["evenly_spaced"]
        errors.append(evaluate_rule(phases, weights, 59, 3).continuous_rel)
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-2


def test_reachable_offsets_are_those_inputs_reach():
    p, k = 11, 3
    offsets = reachable_offsets(p, k)
    assert len(offsets) == 2 * p  # k odd and coprime to p: every multiple of π/p
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    x = np.pi * k * (a + b) / p + np.pi * (np.cos(np.pi * k * (a - b) / p) < 0)
    assert np.isin(np.round(x % (2 * np.pi), 9), np.round(offsets, 9)).all()


def test_continuous_sup_dominates_reachable_and_uncertainty_is_stated():
    rng = np.random.default_rng(1)
    phases, weights = rng.uniform(-np.pi, np.pi, 40), rng.uniform(0.5, 2, 40)
    result = evaluate_rule(phases, weights, 59, 5)
    assert result.continuous_rel >= result.reachable_rel
    fine = np.linspace(0, 2 * np.pi, 400_000, endpoint=False)
    true_sup = rule_error(phases, weights, fine).max() / (weights.sum() * INTEGRAL_CONSTANT)
    assert abs(true_sup - result.continuous_rel) <= result.continuous_rel_uncertainty
