import numpy as np

from quadlens.lens import INTEGRAL_CONSTANT
from quadlens.quadrature import baseline_rules, evaluate_rule, input_angles, reachable_offsets, rule_error


def brute_force_error(phases, weights, x, n_delta=2001, gain=0.0):
    """max over Δ of |rule − (1 + gain) · integral| at offset x."""
    delta = np.linspace(0, 2 * np.pi, n_delta)
    u = x + phases
    rule = (weights[:, None] * np.maximum(np.cos(u), 0)[:, None] * np.cos(2 * u[:, None] - delta[None, :])).sum(0)
    return np.abs(rule - (1 + gain) * weights.sum() * INTEGRAL_CONSTANT * np.cos(delta)).max()


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


def test_the_gain_is_the_mean_error_over_reachable_offsets_and_the_rest_is_what_it_leaves():
    rng = np.random.default_rng(2)
    phases, weights = rng.uniform(-np.pi, np.pi, 12), rng.uniform(0.5, 2, 12)
    p, k = 15, 5  # 3 input angles, 6 reachable offsets
    result = evaluate_rule(phases, weights, p, k)
    offsets = reachable_offsets(p, k)
    assert len(offsets) == 6 and input_angles(p, k) == 3 and input_angles(59, 5) == 59
    integral = weights.sum() * INTEGRAL_CONSTANT
    mean_cos_part = np.mean([(weights * np.maximum(np.cos(x + phases), 0) * np.cos(2 * (x + phases))).sum()
                             for x in offsets]) / integral - 1
    assert abs(result.gain_rel - mean_cos_part) < 1e-12
    rest = max(brute_force_error(phases, weights, x, gain=result.gain_rel) for x in offsets) / integral
    assert abs(result.reachable_after_gain_rel - rest) < 1e-5
    assert abs(result.reachable_rel - max(brute_force_error(phases, weights, x) for x in offsets) / integral) < 1e-5


def test_a_rule_that_sees_few_offsets_can_err_by_a_gain_alone():
    """Six equal nodes π/3 apart, at k = 21 and p = 63: the inputs reach offsets π/3 apart, each of which only permutes
    the nodes, so the rule errs alike at every one, by the six-point sum's distance from the integral."""
    phases, weights = np.pi / 3 * np.arange(6), np.ones(6)
    six_point = (np.maximum(np.cos(phases), 0) * np.cos(2 * phases)).sum() / (6 * INTEGRAL_CONSTANT) - 1
    few = evaluate_rule(phases, weights, 63, 21)
    assert abs(few.gain_rel - six_point) < 1e-12 and few.reachable_after_gain_rel < 1e-12
    assert abs(few.reachable_rel - abs(six_point)) < 1e-12 and six_point < -0.2
    prime = evaluate_rule(phases, weights, 59, 5)  # offsets π/59 apart: the same six nodes, hardly any gain
    assert abs(prime.gain_rel) < 1e-3 < prime.reachable_after_gain_rel
