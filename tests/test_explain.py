"""explain on synthetic pizzas with known ground truth, on the bundled model, and on models it must refuse."""

import dataclasses
import html
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import small_config
from quadlens import Transformer, load_model, separable_tables
from quadlens.explain import explain
from quadlens.figures import write_figures
from quadlens.fourier import wrap
from quadlens.ladder import error_ladder, integral_logits, model_rung, quadrature_rung
from quadlens.neurons import fit_neurons
from quadlens.parity import fit_parity
from quadlens.synthetic import model_from_tables, pizza_spec, pizza_tables, with_parity_neurons


@pytest.fixture(scope="module")
def synthetic():
    spec = pizza_spec(31, (3, 7, 11), neurons_per_cluster=30, beta=0.1, kappa=0.2)
    return spec, explain(model_from_tables(pizza_tables(spec)))


def test_repr_is_one_short_line(bundled_explanation):
    """A notebook cell that ends in ``explain(model)`` shows the verdict, not every array."""
    text = repr(bundled_explanation)
    assert "\n" not in text and len(text) < 200
    assert "verdict='pizza'" in text and "clusters=[21, 28, 1, 6]" in text and "L3_min_margin=12.7" in text


def test_synthetic_ground_truth_is_recovered(synthetic):
    spec, explanation = synthetic
    assert explanation.verdict == "pizza"
    assert sorted(r.cluster.frequency for r in explanation.clusters) == [3, 7, 11]
    for report in explanation.clusters:
        c = report.cluster
        assert np.abs(wrap(c.phi - spec.phi[c.neurons])).max() < 1e-9
        np.testing.assert_allclose(c.r, spec.r[c.neurons], rtol=1e-9)
        np.testing.assert_allclose(c.s, spec.s[c.neurons], rtol=1e-9)
        shape = c.shared_waveform()
        assert abs(shape["beta"] - 0.1) < 1e-9 and abs(abs(shape["lock"]) - np.pi) < 1e-9
        assert abs(shape["kappa"] - 0.2) < 1e-9 and abs(shape["psi0"]) < 1e-9
        assert c.doubling_resultant > 1 - 1e-12 and c.symmetry_resultant > 1 - 1e-12


def test_synthetic_fits_reproduce_the_model_exactly(synthetic):
    _, explanation = synthetic
    for name in ("L1", "L2"):
        assert explanation.level(name, True).max_logit_diff_error < 1e-9


def test_quadrature_error_is_the_gap_between_the_rule_and_the_integral(synthetic):
    """With κ = β = 0, L2 − L∞ for one cluster is |cos(δ/2)|·E(x, Δ): its worst case is the reachable error."""
    from quadlens.ladder import integral_logits, quadrature_tables
    from dataclasses import replace

    _, explanation = synthetic
    report = explanation.clusters[0]
    cluster = replace(report.cluster, offset=np.zeros_like(report.cluster.offset))
    tables = replace(explanation.tables, D_a=np.zeros((31, 31)), D_b=np.zeros((31, 31)))
    gap = quadrature_tables(tables, [cluster], False).logits() - integral_logits(tables, [cluster], False, False)
    t = np.arange(31)
    scale = np.abs(np.cos(np.pi * cluster.frequency * (t[:, None] - t[None, :]) / 31))[..., None]
    worst = (np.abs(gap) / scale).max()
    rule = report.rule.reachable_rel * cluster.total_weight / (3 * np.pi)
    assert worst <= rule + 1e-9 and worst > 0.5 * rule


def test_bundled_model_is_a_pizza(bundled_explanation):
    e = bundled_explanation
    assert e.verdict == "pizza" and e.accuracy == 1.0
    assert len(e.clusters) >= 2
    assert all(r.cluster.doubling_resultant > 0.99 for r in e.clusters)
    assert e.level("L1", True).min_margin > 0
    assert e.level("L1", True).min_margin > e.level("L1", False).min_margin
    for report in e.clusters:  # the trained rule beats equal weights at the same phases
        assert report.rule.continuous_rel < report.baselines["equal_weights"].continuous_rel


def test_explain_json_has_the_documented_fields(bundled_explanation, tmp_path):
    data = json.loads(json.dumps(bundled_explanation.to_dict(), allow_nan=False))
    assert {"accuracy", "verdict", "clusters", "ladder"} <= set(data)
    assert data["model"] == load_model().identity()  # which model was explained
    cluster = data["clusters"][0]
    assert {"frequency", "neurons", "doubling_resultant", "quadrature_error_rel"} <= set(cluster)
    assert {"level", "harmonics", "max_logit_diff_error", "min_margin"} <= set(data["ladder"][0])
    assert sorted(sum((c["neurons"] for c in data["clusters"]), [])) == sorted(set(sum((c["neurons"] for c in data["clusters"]), [])))
    paths = write_figures(bundled_explanation, tmp_path)
    assert [p.name for p in paths] == ["phase_doubling.png", "quadrature.png", "logits.png", "error_ladder.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in paths)


@pytest.mark.parametrize("format, magic", [("pdf", b"%PDF-"), ("svg", b"<?xml")])
def test_figures_for_a_paper_are_vector_files(bundled_explanation, tmp_path, format, magic):
    paths = write_figures(bundled_explanation, tmp_path, format)
    assert [p.name for p in paths] == [f"{name}.{format}" for name in ("phase_doubling", "quadrature", "logits",
                                                                        "error_ladder")]
    assert all(p.read_bytes().startswith(magic) for p in paths)
    with pytest.raises(ValueError, match="'jpg' is not one of png, pdf, svg"):
        write_figures(bundled_explanation, tmp_path / "jpg", "jpg")
    assert not (tmp_path / "jpg").exists()


def test_figures_leave_the_callers_backend_alone_and_return_figures(bundled_explanation):
    """In a notebook a drawing function's Figure shows inline: importing quadlens.figures must not switch the
    user's matplotlib backend (as matplotlib.use("Agg") at import did), nor leave figures open in pyplot."""
    import subprocess
    import sys

    script = ("import matplotlib; matplotlib.use('svg'); import quadlens.figures; import matplotlib.pyplot as plt; "
              "print(matplotlib.get_backend(), len(plt.get_fignums()))")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True).stdout.split() == ["svg", "0"]
    from quadlens import figures

    for draw in figures.FIGURES.values():
        fig = draw(bundled_explanation)
        assert fig.axes and figures.png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_levels_keep_per_input_arrays_from_their_own_logits(bundled_explanation):
    """No level holds its [p, p, p] logits (explain's memory does not grow with the ladder's 12 levels); the
    per-input margin, correct logit and mean logit each keeps are those of the level's own logits."""
    from quadlens.ladder import correct_logits, integral_logits, margins

    e = bundled_explanation
    levels = e.ladder + e.ablation
    assert len(levels) == 12 and not any(hasattr(lv, "logits") for lv in levels)
    clusters = [report.cluster for report in e.clusters]
    for level, logits in ((e.level("L0", None), e.tables.logits()),
                          (e.level("L3", True), integral_logits(e.tables, clusters, True))):
        np.testing.assert_array_equal(level.margin, margins(logits))
        np.testing.assert_array_equal(level.correct_logit, correct_logits(logits))
        np.testing.assert_array_equal(level.mean_logit, logits.mean(-1))
        assert level.min_margin == level.margin.min() and level.accuracy == (level.margin > 0).mean()


def test_levels_scored_a_few_rows_at_a_time_score_the_same(bundled_explanation):
    """At large p the ladder goes a few rows a at a time: chunks of one row and of seven give every figure and
    every per-input array bit for bit, the step errors included."""
    from quadlens.explain import _ablation_rungs
    from quadlens.ladder import PER_INPUT, error_ladder, ladder_rungs

    e = bundled_explanation
    clusters = [report.cluster for report in e.clusters]
    rungs = ladder_rungs(e.tables, e.fits, clusters, e.parity) + _ablation_rungs(e.tables, clusters, e.parity)
    for rows in (1, 7):
        chunked = error_ladder(e.tables, rungs, chunk_elements=rows * 59 * 512)
        for whole, level in zip(e.ladder + e.ablation, chunked, strict=True):
            assert level.summary() == whole.summary()
            for name in PER_INPUT:
                np.testing.assert_array_equal(getattr(level, name), getattr(whole, name))
    assert e.level("L2", True).step_error > 0 and np.isnan(e.level("Linf", False).step_error)


def test_levels_of_low_rank_output_go_through_its_factors(bundled_explanation):
    """L1's and L2's W_L have rank 1 + 2·harmonics·clusters and 2·clusters: the ladder's logits go through the
    factors, which give each W_L as written out neuron by neuron (``fourier.cosine``) and the same logits."""
    from quadlens.fourier import cosine
    from quadlens.ladder import fitted_output, fitted_tables, quadrature_output, quadrature_tables
    from quadlens.neurons import CLUSTERED

    e = bundled_explanation
    fits, clusters, p = e.fits, [report.cluster for report in e.clusters], e.tables.p
    keep = fits.status == CLUSTERED
    for n_harmonics in (1, 2):
        factors = fitted_output(fits, n_harmonics)
        assert factors[1].shape == (1 + 2 * n_harmonics * len(clusters), p)
        W_L = fits.offset_L[:, None] + sum(cosine(p, (h + 1) * fits.frequency, fits.amp_L[h], fits.phase_L[h]).T
                                           for h in range(n_harmonics))
        np.testing.assert_allclose(factors[0] @ factors[1], W_L * keep[:, None], rtol=0, atol=1e-12)
        tables = fitted_tables(e.tables, fits, n_harmonics)
        np.testing.assert_allclose(tables.logits(W_L_factors=factors), tables.logits(), rtol=0, atol=1e-10)
    factors = quadrature_output(e.tables.d_mlp, p, clusters)
    assert factors[1].shape == (2 * len(clusters), p)
    for cluster in clusters:
        psi0 = cluster.shared_waveform()["psi0"]
        np.testing.assert_allclose((factors[0] @ factors[1])[cluster.neurons],
                                   cosine(p, cluster.frequency, cluster.weights / (2 * cluster.r),
                                          2 * cluster.phi + psi0).T, rtol=0, atol=1e-12)
    tables = quadrature_tables(e.tables, clusters, True)
    np.testing.assert_allclose(tables.logits(W_L_factors=factors), tables.logits(), rtol=0, atol=1e-10)


def test_learned_attention_model_is_refused():
    e = explain(Transformer(small_config(p=13, attention_rate=0.0), seed=2))
    failed = {c.name for c in e.criteria if not c.passed}
    assert e.verdict in ("clock", "does not fit") and "constant_attention" in failed
    assert e.to_dict()["clusters"] == [] and e.to_dict()["ladder"] == []


def test_untrained_model_does_not_fit():
    e = explain(Transformer(small_config(p=13), seed=2))
    assert e.verdict == "does not fit"
    assert "accuracy" in {c.name for c in e.criteria if not c.passed}
    assert e.to_dict()["clusters"] == []


def test_a_model_the_picture_does_not_fit_has_no_figures_or_levels_and_says_why(tmp_path):
    from quadlens import figures

    e = explain(Transformer(small_config(p=13), seed=2))
    for draw in figures.FIGURES.values():
        with pytest.raises(ValueError, match="nothing to draw: the quadrature picture does not fit this model "
                                             r"\(verdict 'does not fit'\): model accuracy"):
            draw(e)
    with pytest.raises(ValueError, match=r"no level L3 \(harmonics=True\) in this explanation: the quadrature"):
        e.level("L3", True)
    assert figures.write_figures(e, tmp_path / "figures") == [] and not (tmp_path / "figures").exists()


def test_dead_cluster_does_not_fit(bundled, bundled_explanation):
    params = {k: v.detach().clone() for k, v in bundled.params().items()}
    params["W_out"][bundled_explanation.clusters[0].cluster.neurons] = 0
    e = explain(Transformer(bundled.cfg, params))
    assert e.verdict == "does not fit"
    assert "dead_neurons" in {c.name for c in e.criteria if not c.passed}


def test_a_lone_cluster_is_weakest_at_its_blind_spots():
    spec = pizza_spec(31, (5,), neurons_per_cluster=40, beta=0.0, kappa=0.0)
    e = explain(model_from_tables(pizza_tables(spec)))
    margin = e.margin_by_difference["model"]
    blind = e.clusters[0].blind_spots
    assert blind and int(np.argmin(margin)) in blind
    assert margin[blind].max() < np.delete(margin, blind).min()


def test_explain_does_not_change_the_model(bundled):
    before = {k: v.detach().clone() for k, v in bundled.params().items()}
    explain(bundled)
    assert all(torch.equal(before[k], v) for k, v in bundled.params().items())
    assert bundled.W_E.dtype == torch.float32


def test_gelu_pizza_is_explained_with_the_gelu_lens():
    import dataclasses

    spec = pizza_spec(31, (3, 7, 11), neurons_per_cluster=30)
    tables = dataclasses.replace(pizza_tables(spec), act_fn="gelu")
    e = explain(model_from_tables(tables))
    assert e.verdict == "pizza", e.reasons
    assert e.level("L2", True).max_logit_diff_error < 1e-9  # exact symmetric quadrature, now through GELU
    assert e.level("L3", True).accuracy == 1.0
    data = e.to_dict()
    assert data["lens"]["activation"] == "gelu" and "trapezoid" in data["lens"]["method"]
    assert all(0.5 < c["lobe_integral_over_relu"] < 1.5 for c in data["clusters"])


def test_settings_out_of_range_are_refused(bundled):
    with pytest.raises(ValueError, match=r"min_share is a share of a neuron's energy, in \[0, 1\]; got 2"):
        explain(bundled, min_share=2)
    with pytest.raises(ValueError, match="n_harmonics must be at least 2: .*; got 1"):
        explain(bundled, n_harmonics=1)
    with pytest.raises(ValueError, match="n_harmonics must be at least 1 .*, got 0"):
        fit_neurons(separable_tables(bundled), n_harmonics=0)


@pytest.mark.filterwarnings("ignore:p=.* is not prime")
@pytest.mark.parametrize("p, frequencies", [(21, (7, 2, 5)), (27, (9, 2, 5))])
def test_a_second_harmonic_on_the_key_frequency_is_not_counted_twice(p, frequencies):
    """Where p = 3k the second harmonic 2k is −k modulo p: fitting it as well counted the key frequency twice, and
    L2 failed on every input with a ≡ b (mod 3), a third of them (two of eight models trained at p = 63 did so)."""
    from quadlens.clusters import build_clusters
    from quadlens.ladder import quadrature_tables, targets
    from quadlens.neurons import aliased_harmonic

    assert aliased_harmonic(p, np.array(frequencies), 2).tolist() == [True, False, False]
    assert not aliased_harmonic(59, np.arange(1, 30), 2).any()  # never at a prime p > 3
    tables = pizza_tables(pizza_spec(p, frequencies, neurons_per_cluster=30, seed=0), noise=0.0, seed=0)
    fits = fit_neurons(tables)
    assert (fits.amp_a[1][fits.frequency == frequencies[0]] == 0).all()
    clusters = build_clusters(fits, tables.b_in)
    assert (quadrature_tables(tables, clusters, harmonics=True).logits().argmax(-1) == targets(p)).all()
    assert explain(model_from_tables(tables)).verdict == "pizza"


@pytest.mark.filterwarnings("ignore:p=.* is not prime")
def test_a_cluster_that_sees_few_angles_says_so_where_its_error_is_a_gain(bundled_explanation, capsys):
    """At p = 21 the cluster at k = 7 sees 3 input angles. With its nodes π/3 apart, every offset the inputs reach
    permutes them, so its large quadrature error is all gain, and explain says so; its neighbours get no note."""
    from dataclasses import replace

    from quadlens.cli import print_explanation
    from quadlens.report import plain_words

    spec = pizza_spec(21, (7, 2, 5), neurons_per_cluster=30, beta=0.0, weight_spread=0.0, seed=0)
    few = spec.frequency == 7
    phi = np.where(few, np.pi / 3 * (np.arange(len(few)) % 6), spec.phi)
    explanation = explain(model_from_tables(pizza_tables(replace(spec, phi=phi))))
    assert explanation.verdict == "pizza"
    clusters = {c["frequency"]: c for c in explanation.to_dict()["clusters"]}
    assert {k: c["input_angles"] for k, c in clusters.items()} == {7: 3, 2: 21, 5: 21}
    assert clusters[7]["quadrature_error_rel"] > 0.3 and clusters[7]["quadrature_gain_rel"] < -0.2
    assert clusters[7]["quadrature_error_reachable_after_gain_rel"] < 1e-9
    (note,) = explanation.few_angles_notes()
    assert note.startswith("k = 7 shares a factor with p = 21, so its neurons see only 3 input angles")
    assert "-21.5 %" in note
    assert note in html.unescape(plain_words(explanation, None))  # the report says so too
    print_explanation(explanation)  # and the terminal
    assert " ".join(capsys.readouterr().out.split()).count("shares a factor with p") == 1
    assert not bundled_explanation.few_angles_notes()  # p = 59 is prime
    assert {c.input_angles for c in bundled_explanation.clusters} == {59}


def test_a_cosine_at_the_nyquist_frequency_is_fitted_at_its_amplitude():
    """At k ≡ −k (mod p), k = p/2 or 0, cos(ωkt + φ) is cos φ · (±1)^t: the projection is f̂(k)/p, not 2f̂(k)/p."""
    from quadlens.fourier import amplitude_phase, cosine

    rng = np.random.default_rng(0)
    for p, k in ((12, 6), (12, 18), (20, 10), (20, 3), (21, 5)):
        x = rng.normal(size=(p, 8))
        amplitude, phase = amplitude_phase(x, k)
        residual = x - cosine(p, k, amplitude, phase)  # least squares: orthogonal to cos and sin at k
        t = np.arange(p)[:, None]
        assert np.abs((residual * np.cos(2 * np.pi * k * t / p)).sum(0)).max() < 1e-12
        assert np.abs((residual * np.sin(2 * np.pi * k * t / p)).sum(0)).max() < 1e-12


def test_energy_shares_cover_every_frequency_the_nyquist_one_included():
    from quadlens.fourier import energy_by_frequency

    rng = np.random.default_rng(1)
    for p in (7, 8, 20, 21):
        shares = energy_by_frequency(rng.normal(size=(p, 5)))
        assert shares.shape == (p // 2, 5) and np.allclose(shares.sum(0), 1.0, atol=1e-12)
    parity = energy_by_frequency(((-1.0) ** np.arange(20))[:, None] + 0.3)  # (−1)^t: all at p/2 = 10
    assert parity[-1, 0] == pytest.approx(1.0) and np.abs(parity[:-1, 0]).max() < 1e-12


@pytest.mark.filterwarnings("ignore:p=.* is not prime")
@pytest.mark.parametrize("p, frequencies", [(12, (3, 1, 5)), (16, (4, 3, 5)), (20, (5, 3, 7))])
def test_a_second_harmonic_at_the_nyquist_frequency_is_fitted_whole(p, frequencies):
    """Where p = 4k the second harmonic 2k is p/2, at which each neuron shows only cos(2φ_i + λ) of its harmonic:
    fitted at twice its amplitude, L1 was 1.0 off a noise-free pizza, and β per neuron came out 0.064 for 0.1."""
    spec = pizza_spec(p, frequencies, neurons_per_cluster=30, seed=0)
    explanation = explain(model_from_tables(pizza_tables(spec, noise=0.0, seed=0)))
    assert explanation.verdict == "pizza"
    for name in ("L1", "L2"):
        assert explanation.level(name, True).max_logit_diff_error < 1e-9
    nyquist = next(r.cluster for r in explanation.clusters if r.cluster.frequency == frequencies[0])
    shape = nyquist.shared_waveform()
    assert abs(shape["beta"] - 0.1) < 1e-9 and abs(abs(shape["lock"]) - np.pi) < 1e-9


@pytest.mark.filterwarnings("ignore:p=20 is not prime")
def test_a_trained_cluster_whose_harmonic_is_at_the_nyquist_frequency():
    """benchmarks/models/pizza_p20_seed4 has a cluster at k = 5 = p/4 and 32 parity neurons, which version 2 called
    mixed and left out of L1. With them in L1, as fitted at p/2, L1 with harmonics is 17.1 off the model's logit
    differences; fitting a cosine at p/2 at twice its amplitude, as version 2 did, puts it 44.7 off. With them in L2
    and L3 as the parity term (version 4), L3 is right on every input, with worst margin 3.39 (−0.76 without)."""
    explanation = explain(load_model(Path(__file__).parents[1] / "benchmarks" / "models" / "pizza_p20_seed4.safetensors"))
    assert explanation.verdict == "pizza" and 5 in [r.cluster.frequency for r in explanation.clusters]
    assert explanation.to_dict()["neurons"]["n_parity"] == 32
    with_harmonics = explanation.level("L1", True)
    assert with_harmonics.accuracy == 1.0 and with_harmonics.min_margin > 5 and with_harmonics.max_logit_diff_error < 25
    for level in ("L2", "L3"):
        assert explanation.level(level, True).accuracy == 1.0 and explanation.level(level, True).min_margin > 2


@pytest.mark.filterwarnings("ignore:p=20 is not prime")
def test_neurons_that_read_and_write_parity_are_named_not_mixed():
    """At an even p, (−1)^t = cos(πt) is a frequency of its own, p/2, and trained models use it (32 neurons of the
    trained p = 20 model). Such a neuron is `parity`, fitted exactly, left out of the clusters and kept, symmetrised,
    as the explanation's parity term: with F_a = F_b, L2 is exact."""
    p, n = 20, 6
    tables = pizza_tables(pizza_spec(p, (3, 7, 9), neurons_per_cluster=30, seed=0), noise=0.0, seed=0)
    tables = with_parity_neurons(tables, n, seed=0, scale=0.3)  # a few % of the influence
    tables = dataclasses.replace(tables, F_b=tables.F_a.copy())  # symmetric, as the clusters are
    fits = fit_neurons(tables)
    parity = np.arange(tables.d_mlp - n, tables.d_mlp)
    assert (fits.status[parity] == "parity").all() and (fits.status[:-n] == "cluster").all()
    assert (fits.frequency[parity] == p // 2).all()
    np.testing.assert_allclose(fits.inputs(2)[0][:, parity], tables.F_a[:, parity], atol=1e-12)  # exact at p/2
    explanation = explain(model_from_tables(tables))
    assert explanation.verdict == "pizza" and sorted(r.cluster.frequency for r in explanation.clusters) == [3, 7, 9]
    census = explanation.to_dict()["neurons"]
    assert census["n_parity"] == n and census["parity"] == parity.tolist() and census["n_mixed"] == 0
    assert 0 < census["parity_influence_share"] < 0.5
    assert explanation.parity_note().startswith(f"{n} neurons read the parity of a and b and write that of c")
    assert explanation.level("L1", True).max_logit_diff_error < 1e-9  # L1 keeps them, as fitted
    assert explanation.level("L2", True).max_logit_diff_error < 1e-9  # and so does L2, symmetrised
    assert explanation.to_dict()["parity"]["neurons"] == parity.tolist()
    without = error_ladder(explanation.tables, [model_rung(explanation.tables),
                                                quadrature_rung("L2", explanation.tables,
                                                                [r.cluster for r in explanation.clusters], True)])[1]
    assert without.max_logit_diff_error > 0.1  # left out, they would cost L2 this much


@pytest.mark.filterwarnings("ignore:p=.* is not prime")
@pytest.mark.parametrize("p, seed, asymmetry", [(8, 1, 0.0), (12, 2, 0.5), (20, 3, 1.0)])
def test_the_parity_term_averages_the_cells_of_equal_parity(p, seed, asymmetry):
    """L3's parity term is L2's parity neurons averaged, per parity of a + b, over the two cells (a mod 2, b mod 2)
    that share it, times (−1)^c: checked against the model's own parity neurons evaluated cell by cell, where their
    input is exactly A (−1)^t + m on either side."""
    tables = with_parity_neurons(pizza_tables(pizza_spec(p, (1,), neurons_per_cluster=4)), 5, seed, 0.5, asymmetry)
    parity = fit_parity(fit_neurons(tables, min_share=0.0), tables.b_in)
    added = np.arange(4, 9)
    np.testing.assert_array_equal(parity.neurons, added)
    sym = (tables.F_a + tables.F_b)[:2, added] / 2  # t = 0 and 1: the symmetrised input, (m + m')/2 ± A
    mean = sym.mean(0)
    cells = np.array([[tables.b_in[added] + 2 * mean + (sym[x] - mean) + (sym[y] - mean) for y in (0, 1)]
                      for x in (0, 1)])
    votes = np.maximum(cells, 0) @ (tables.W_L[added, 0] - tables.W_L[added].mean(1))  # w: on (−1)^c at c = 0
    np.testing.assert_allclose(parity.by_sum(), [(votes[0, 0] + votes[1, 1]) / 2, (votes[0, 1] + votes[1, 0]) / 2],
                               atol=1e-12)
    logits = integral_logits(tables, [], harmonics=True, parity=parity)
    a, c = np.arange(p)[:, None, None], np.arange(p)[None, None, :]
    expected = parity.by_sum()[(a + np.arange(p)[None, :, None]) % 2] * (-1.0) ** c
    np.testing.assert_allclose(logits, expected, atol=1e-12)
