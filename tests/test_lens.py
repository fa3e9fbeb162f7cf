"""The infinite-width lens: the integral identity and the exact generalised integral, checked numerically."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from quadlens.lens import (INTEGRAL_CONSTANT, by_difference_and_step, cluster_lens_table, waveform_integral,
                          waveform_integral_numeric)
from quadlens.synthetic import ideal_worst_margin, pizza_spec, pizza_tables, separating_frequencies


def test_integral_identity():
    theta = np.linspace(-np.pi / 2, np.pi / 2, 200_001)
    half_lobe = np.trapezoid(np.cos(theta) * np.cos(2 * theta), theta)
    assert abs(half_lobe - 2 / 3) < 1e-9
    assert abs(waveform_integral_numeric(0.0, 0.0, 0.0) - 2 * INTEGRAL_CONSTANT) < 1e-9


def test_closed_form_without_offset_or_harmonic():
    delta = np.linspace(0, 4 * np.pi, 101)
    np.testing.assert_allclose(waveform_integral(0.0, 0.0, delta), 2 * np.abs(np.cos(delta / 2)) / (3 * np.pi),
                               atol=1e-15)


@settings(max_examples=examples(200), deadline=None)
@given(kappa=st.floats(-3, 3), beta=st.floats(-1, 1), delta=st.floats(0, 2 * np.pi))
def test_exact_integral_matches_quadrature(kappa, beta, delta):
    assert abs(waveform_integral(kappa, beta, delta) - waveform_integral_numeric(kappa, beta, delta)) < 1e-9


def test_sine_part_vanishes():
    theta = np.linspace(0, 2 * np.pi, 100_000, endpoint=False)
    g = np.maximum(0.3 + 2 * np.cos(1.1) * np.cos(theta) - 0.2 * np.cos(2 * theta), 0)
    assert abs(np.mean(g * np.sin(2 * theta))) < 1e-12


def test_cluster_lens_is_the_pizza_formula():
    p, k, W, psi0 = 13, 4, 7.0, 0.3
    logits = by_difference_and_step(cluster_lens_table(p, k, W, psi0), np.arange(p))
    a, b, c = np.meshgrid(np.arange(p), np.arange(p), np.arange(p), indexing="ij")
    omega = 2 * np.pi / p
    expected = W / (3 * np.pi) * np.abs(np.cos(omega * k * (a - b) / 2)) * np.cos(omega * k * (a + b - c) - psi0)
    np.testing.assert_allclose(logits, expected, atol=1e-12)


def test_activation_integral():
    from quadlens.lens import activation_integral, lobe_integral

    kappa, beta, delta = 0.3, -0.1, np.linspace(0, 2 * np.pi, 17)
    np.testing.assert_allclose(activation_integral("relu", kappa, beta, delta, scale=5.0),
                               waveform_integral(kappa, beta, delta), atol=0)
    coarse = activation_integral("gelu", kappa, beta, delta, scale=2.0, n=256)
    fine = activation_integral("gelu", kappa, beta, delta, scale=2.0, n=16384)
    assert np.abs(coarse - fine).max() < 1e-9  # spectral convergence: the stated accuracy holds at 1024 points
    # GELU(s x)/s tends to relu(x) as the amplitude grows
    assert np.abs(activation_integral("gelu", kappa, beta, delta, scale=1e4) - waveform_integral(kappa, beta, delta)).max() < 1e-4
    assert abs(lobe_integral("relu") - INTEGRAL_CONSTANT) == 0
    assert abs(lobe_integral("gelu", 1e4) - INTEGRAL_CONSTANT) < 1e-4


def test_ideal_worst_margin_is_the_lens_margin():
    p, frequencies, kappa, beta = 23, (2, 5, 9), 0.2, 0.1
    logits = by_difference_and_step(sum(cluster_lens_table(p, k, 2.0, 0.0, kappa, -beta) for k in frequencies),
                                    np.arange(p))
    target = (np.arange(p)[:, None] + np.arange(p)) % p
    right = np.take_along_axis(logits, target[..., None], -1)
    wrong = np.arange(p) != target[..., None]
    assert abs(ideal_worst_margin(p, frequencies, kappa, beta) - (right - logits)[wrong].min()) < 1e-12


def test_separating_frequencies_make_a_pizza_that_adds():
    p = 61
    spaced = tuple(int(k) for k in np.linspace(1, (p - 1) // 2, 6)[1:5].round())  # (7, 13, 18, 24)
    chosen = separating_frequencies(p, tries=16, seed=1)
    assert len(set(chosen)) == 4 and all(1 <= k <= (p - 1) // 2 for k in chosen)
    assert ideal_worst_margin(p, chosen) > max(ideal_worst_margin(p, spaced), 0.1)
    logits = pizza_tables(pizza_spec(p, chosen, neurons_per_cluster=60, seed=1), noise=0.02, seed=1).logits()
    answers = logits.argmax(-1)
    assert (answers == (np.arange(p)[:, None] + np.arange(p)) % p).all()
