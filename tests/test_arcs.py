"""The compiled arc sums: level sets of neuron phases and range maxima, against direct evaluation."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from quadlens.arcs import (MAX_ARCS, Workspace, band_pieces, ideal_sums, level_pieces, on_set_pieces, phase_buckets,
                          prefix, range_max, range_max_table, row_prefix, shifted_arcs, square_prefix, square_sums,
                          table_levels, unwrapped)


def level_arcs(kappa, A, B, lower, upper, shift, phase2, buckets, i1, i2) -> int:
    """The reference level set for one input: its pieces computed afresh, then moved by the shift."""
    starts, lengths = np.empty(MAX_ARCS), np.empty(MAX_ARCS)
    count = level_pieces(kappa, A, B, lower, upper, np.empty(12), starts, lengths)
    return shifted_arcs(starts, lengths, count, shift, phase2, buckets, i1, i2)


def members(i1: np.ndarray, i2: np.ndarray, count: int, n: int) -> np.ndarray:
    """How many times each neuron is covered by the ranges (indices into the doubled list, folded back)."""
    covered = np.zeros(n, int)
    for j1, j2 in zip(i1[:count], i2[:count]):
        covered[np.arange(j1, j2) % n] += 1
    return covered


@settings(max_examples=examples(300), deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), kappa=st.floats(-2, 2), A=st.floats(-1, 1),
       B=st.floats(-0.5, 0.5), lower=st.floats(-1.5, 1.5), width=st.one_of(st.just(np.inf), st.floats(0, 2)),
       shift=st.floats(-10, 10), spread=st.sampled_from([np.pi, 0.01]))
def test_level_arcs_cover_exactly_the_level_set(seed, n, kappa, A, B, lower, width, shift, spread):
    phase = np.sort(np.random.default_rng(seed).uniform(-spread, spread, n))  # spread 0.01: one crowded cell
    upper = lower + width
    i1, i2 = np.empty(10, np.int64), np.empty(10, np.int64)
    phase2 = np.concatenate([phase, phase + 2 * np.pi])
    count = level_arcs(kappa, A, B, lower, upper, shift, phase2, phase_buckets(phase2), i1, i2)
    theta = shift + phase
    x = kappa + 2 * A * np.cos(theta) + 2 * B * np.cos(2 * theta)
    covered = members(i1, i2, count, n)
    assert covered.max(initial=0) <= 1, "a neuron counted twice"
    clear = (np.abs(x - lower) > 1e-9) & (np.abs(x - upper) > 1e-9)  # rounding decides the boundary itself
    inside = (x > lower) & (x <= upper)
    np.testing.assert_array_equal(covered[clear], inside[clear])


def test_arcs_that_meet_at_zero_or_pi_are_one_arc():
    """A level set through θ = 0 or θ = π is one arc, not two that meet there: half the prefix-sum lookups."""
    starts, lengths = np.empty(MAX_ARCS), np.empty(MAX_ARCS)
    assert level_pieces(0.2, 1.0, 0.0, 0.0, np.inf, np.empty(12), starts, lengths) == 1  # x > 0 around θ = 0
    np.testing.assert_allclose([starts[0], lengths[0]], [-np.arccos(-0.1), 2 * np.arccos(-0.1)])
    assert level_pieces(0.2, 1.0, 0.0, -np.inf, 0.0, np.empty(12), starts, lengths) == 1  # x ≤ 0 around θ = π
    np.testing.assert_allclose([starts[0], lengths[0]], [np.arccos(-0.1), 2 * (np.pi - np.arccos(-0.1))])
    assert level_pieces(3.0, 1.0, 0.0, 0.0, np.inf, np.empty(12), starts, lengths) == 1  # the whole circle
    np.testing.assert_allclose([starts[0], lengths[0]], [-np.pi, 2 * np.pi])
    assert level_pieces(0.0, 1.0, 0.0, 0.5, 1.0, np.empty(12), starts, lengths) == 2  # a band: two arcs


@settings(max_examples=examples(50), deadline=None)
@given(seed=st.integers(0, 10_000), p=st.integers(2, 40), k=st.integers(1, 19), kappa=st.floats(-1.5, 1.5),
       beta=st.floats(-0.5, 0.5))
def test_on_set_arcs_tabulated_per_difference_match_the_per_input_level_set(seed, p, k, kappa, beta):
    rng = np.random.default_rng(seed)
    phase2 = np.sort(rng.uniform(-np.pi, np.pi, 25))
    phase2 = np.concatenate([phase2, phase2 + 2 * np.pi])
    buckets, omega_k = phase_buckets(phase2), 2 * np.pi * k / p
    A, B, starts, lengths, counts, _, _ = on_set_pieces(kappa, beta, omega_k, p)
    i1, i2, j1, j2 = (np.empty(10, np.int64) for _ in range(4))
    for a, b in rng.integers(0, p, (20, 2)):
        shift, difference = omega_k * (a + b) / 2, a - b + p - 1
        delta = omega_k * (a - b)
        assert (A[difference], B[difference]) == (np.cos(delta / 2), beta * np.cos(delta))
        count = shifted_arcs(starts[difference], lengths[difference], counts[difference], shift, phase2, buckets,
                             i1, i2)
        expected = level_arcs(kappa, A[difference], B[difference], 0.0, np.inf, shift, phase2, buckets, j1, j2)
        assert count == expected
        np.testing.assert_array_equal(i1[:count], j1[:count])
        np.testing.assert_array_equal(i2[:count], j2[:count])


@settings(max_examples=examples(100), deadline=None)
@given(seed=st.integers(0, 10_000), p=st.integers(2, 40), k=st.integers(1, 19), kappa=st.floats(-1.5, 1.5),
       beta=st.floats(-0.5, 0.5), tau=st.floats(0, 3))
def test_bands_from_the_on_sets_roots_match_their_level_sets(seed, p, k, kappa, beta, tau):
    rng = np.random.default_rng(seed)
    phase2 = np.sort(rng.uniform(-np.pi, np.pi, 25))
    phase2 = np.concatenate([phase2, phase2 + 2 * np.pi])
    buckets, omega_k = phase_buckets(phase2), 2 * np.pi * k / p
    A, B, _, _, _, zero_roots, zero_angles = on_set_pieces(kappa, beta, omega_k, p)
    i1, i2, j1, j2 = (np.empty(MAX_ARCS, np.int64) for _ in range(4))
    starts, lengths, cuts = np.empty(MAX_ARCS), np.empty(MAX_ARCS), np.empty(12)
    for a, b in rng.integers(0, p, (10, 2)):
        shift, difference = omega_k * (a + b) / 2, a - b + p - 1
        for off, (lower, upper) in ((False, (0.0, tau)), (True, (-tau, 0.0))):
            pieces = band_pieces(kappa, A[difference], B[difference], tau, off, zero_roots[difference],
                                 zero_angles[difference], cuts, starts, lengths)
            count = shifted_arcs(starts, lengths, pieces, shift, phase2, buckets, i1, i2)
            expected = level_arcs(kappa, A[difference], B[difference], lower, upper, shift, phase2, buckets, j1, j2)
            assert count == expected
            np.testing.assert_array_equal(i1[:count], j1[:count])
            np.testing.assert_array_equal(i2[:count], j2[:count])


@settings(max_examples=examples(40), deadline=None)
@given(seed=st.integers(0, 10_000), p=st.integers(2, 23), n=st.integers(1, 30), k=st.integers(1, 11),
       kappa=st.floats(-1.5, 1.5), beta=st.floats(-0.5, 0.5))
def test_ideal_sums_match_direct_sums_over_the_on_set(seed, p, n, k, kappa, beta):
    """The Lipschitz tier's kernel, which computes b ≥ a and copies the rest across the diagonal, against the
    sum over every neuron with x > 0 of r (κ + Q(θ)) times its output weights, input by input."""
    rng = np.random.default_rng(seed)
    phase, r, weights = np.sort(rng.uniform(-np.pi, np.pi, n)), rng.uniform(0.5, 2, n), rng.normal(size=(n, 3))
    parts = r * np.stack([np.ones(n), np.cos(phase), np.sin(phase), np.cos(2 * phase), np.sin(2 * phase)])
    found = np.full((3, p, p), np.nan)
    ideal_sums(phase, kappa, beta, 2 * np.pi * k / p, prefix(parts.T[:, :, None] * weights[:, None, :]), found)
    for a in range(p):
        for b in range(p):
            delta, theta = 2 * np.pi * k * (a - b) / p, np.pi * k * (a + b) / p + phase
            x = kappa + 2 * np.cos(delta / 2) * np.cos(theta) + 2 * beta * np.cos(delta) * np.cos(2 * theta)
            if np.abs(x).min() < 1e-9:  # rounding decides a neuron on the kink itself
                continue
            np.testing.assert_allclose(found[:, a, b], (r * x * (x > 0)) @ weights, rtol=1e-9, atol=1e-9)


@settings(max_examples=examples(40), deadline=None)
@given(seed=st.integers(0, 10_000), p=st.integers(2, 23), n=st.integers(1, 30), k=st.integers(1, 11),
       kappa=st.floats(-1.5, 1.5), beta=st.floats(-0.5, 0.5))
def test_square_sums_match_the_ideal_activations_squared_norm(seed, p, n, k, kappa, beta):
    """Σ over the on-set of r² x², from the 9-part expansion of x², against direct evaluation (no neuron is
    skipped: one on its kink contributes r² x² ≈ 0 either way)."""
    rng = np.random.default_rng(seed)
    phase, r = np.sort(rng.uniform(-np.pi, np.pi, n)), rng.uniform(0.5, 2, n)
    out = np.full((p, p), np.nan)
    square_sums(phase, kappa, beta, 2 * np.pi * k / p, square_prefix(phase, r), out)
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    delta, theta = 2 * np.pi * k * (a - b) / p, (np.pi * k * (a + b) / p)[..., None] + phase
    x = kappa + 2 * np.cos(delta / 2)[..., None] * np.cos(theta) + 2 * beta * np.cos(delta)[..., None] * np.cos(2 * theta)
    np.testing.assert_allclose(out, (r ** 2 * np.maximum(x, 0) ** 2).sum(-1), rtol=1e-9, atol=1e-9)


@settings(max_examples=examples(200), deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 300))
def test_range_max_matches_direct_maximum(seed, n):
    """Ranges of the doubled neuron list (at most n long, wrapping past n or not) against the table over the list
    itself."""
    rng = np.random.default_rng(seed)
    values = rng.exponential(size=(3, n))
    table = np.full((table_levels(n), 3, n), 1e300)  # a read of anything unwritten would win every maximum
    range_max_table(values, table)
    doubled = np.concatenate([values, values], axis=1)
    narrow = np.full((table_levels(n), 3, n), np.float32(1e30), np.float32)
    range_max_table(values, narrow)  # float32, each value rounded up: maxima are upper bounds, barely above
    for _ in range(40):
        row = int(rng.integers(3))
        j1 = int(rng.integers(0, 2 * n))
        longest = min(n, 2 * n - j1)
        j2 = j1 + (int(rng.integers(1, longest + 1)) if rng.random() < 0.7 else min(int(rng.integers(1, 20)), longest))
        assert range_max(table, row, j1, j2) == doubled[row, j1:j2].max()
        rounded = float(range_max(narrow, row, j1, j2))
        assert doubled[row, j1:j2].max() <= rounded <= doubled[row, j1:j2].max() * (1 + 2.0 ** -23)


@settings(max_examples=examples(30), deadline=None)
@given(seed=st.integers(0, 10_000), p=st.integers(1, 7), n=st.integers(1, 40), W=st.integers(1, 5))
def test_row_prefix_matches_numpy_and_reads_wrapped_arcs_in_two_parts(seed, p, n, W):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(p, n))
    weights = rng.normal(size=(n, W))
    doubled = prefix(rows[:, :, None] * weights[None], axis=1)  # [p, 2n + 1, W]
    once = row_prefix(rows, weights)
    np.testing.assert_allclose(once, doubled[:, :n + 1], rtol=1e-12, atol=1e-12)
    for j1 in range(2 * n):
        for j2 in range(j1 + 1, min(j1 + n, 2 * n) + 1):
            start, end, wrapped = unwrapped(j1, j2, n)
            np.testing.assert_allclose(once[:, end] - once[:, start] + once[:, wrapped],
                                       doubled[:, j2] - doubled[:, j1], rtol=1e-10, atol=1e-10)


def test_workspace_hands_out_the_same_memory_reshaped_and_grows_when_asked_for_more():
    workspace = Workspace()
    first = workspace.array("sums", (3, 4))
    first[:] = 7.0
    smaller = workspace.array("sums", (2, 5))
    assert smaller.shape == (2, 5) and np.shares_memory(first, smaller)
    assert not np.shares_memory(first, workspace.array("other", (3, 4))), "names share memory"
    larger = workspace.array("sums", (5, 5))
    assert larger.shape == (5, 5) and not np.shares_memory(first, larger)
    rows, weights = np.arange(6.0).reshape(2, 3), np.ones((3, 2))
    out = workspace.array("prefix", (2, 4, 2))
    assert row_prefix(rows, weights, out) is out
    np.testing.assert_array_equal(out, row_prefix(rows, weights))
