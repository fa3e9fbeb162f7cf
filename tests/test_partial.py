"""An interrupted ``quadlens bound`` (or ``quadlens report``) resumes: brute force's rows and each finished tier are
kept on disk, for the same model, explanation and version only, and give the same results as a run never
interrupted."""

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from quadlens import certify, separable_tables
from quadlens.certify import BRUTE_FORCE, bound_tables, brute_force
from quadlens.cli import PARTIAL, app
from quadlens.clusters import build_clusters
from quadlens.neurons import fit_neurons
from quadlens.partial import Partial, fingerprint


@pytest.fixture(scope="module")
def explained(bundled):
    tables = separable_tables(bundled)
    return tables, build_clusters(fit_neurons(tables), tables.b_in)


class Stop(Exception):
    pass


def test_interrupted_brute_force_resumes_with_the_same_rows(explained, tmp_path):
    tables, clusters = explained
    truth, margin, ops, _ = brute_force(tables, clusters, "cpu")
    partial = Partial(tmp_path, fingerprint(tables, clusters))
    chunk = 59 * 512 * 8  # 8 rows a chunk

    def stop_after_three_chunks(done, total):
        if done >= 24:
            raise Stop

    with pytest.raises(Stop):
        brute_force(tables, clusters, "cpu", chunk, partial=partial, save_every=0, on_rows=stop_after_three_chunks)
    saved = partial.load(BRUTE_FORCE)
    assert len(saved["truth"]) == 24 and float(saved["seconds"]) > 0
    heard = []
    resumed, resumed_margin, resumed_ops, seconds = brute_force(
        tables, clusters, "cpu", chunk, partial=partial, on_rows=lambda done, total: heard.append(done))
    assert heard[0] == 24 and heard[-1] == 59 and len(heard) == 1 + 5  # rows 24-59 in chunks of 8
    np.testing.assert_array_equal(resumed, truth)
    np.testing.assert_array_equal(resumed_margin, margin)
    assert resumed_ops == ops and seconds > float(saved["seconds"])
    assert len(partial.load(BRUTE_FORCE)["truth"]) == 59  # kept until the caller has written its results


def test_partial_results_for_other_inputs_or_damaged_are_not_read(explained, tmp_path):
    tables, clusters = explained
    partial = Partial(tmp_path, fingerprint(tables, clusters))
    partial.save("stage", {"x": np.arange(3.0)})
    np.testing.assert_array_equal(partial.load("stage")["x"], np.arange(3.0))
    nudged = dataclasses.replace(tables, W_L=tables.W_L + np.where(np.arange(tables.W_L.size) == 7, 1e-12, 0)
                                 .reshape(tables.W_L.shape))
    assert Partial(tmp_path, fingerprint(nudged, clusters)).load("stage") is None
    assert Partial(tmp_path, fingerprint(tables, clusters[1:])).load("stage") is None
    assert partial.load("other stage") is None
    (tmp_path / "stage.npz").write_bytes(b"PK\x03\x04 not a zip file")
    assert partial.load("stage") is None


def test_bound_tables_reads_back_what_it_saved(explained, tmp_path):
    """A resumed run takes brute force and every finished tier from disk instead of computing them again."""
    tables, clusters = explained
    first = bound_tables(tables, clusters, "cpu", ["lipschitz", "arcs"], resume=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brute_force.npz", "tier_arcs.npz", "tier_lipschitz.npz"]
    partial = Partial(tmp_path, fingerprint(certify.__version__, certify.SCHEMA_VERSION, tables, clusters, None))
    marked = partial.load("tier_arcs")
    marked["bound"] = marked["bound"] + 1.0  # a mark: only a run that reads the file returns it
    partial.save("tier_arcs", marked)
    again = bound_tables(tables, clusters, "cpu", ["lipschitz", "arcs"], resume=tmp_path)
    np.testing.assert_array_equal(again.truth, first.truth)
    np.testing.assert_array_equal(again.tiers[1].bound, first.tiers[1].bound + 1.0)
    assert (again.tiers[1].ops, again.tiers[1].seconds) == (first.tiers[1].ops, first.tiers[1].seconds)


def test_bound_command_interrupted_then_run_again_gives_the_uninterrupted_results(tmp_path, monkeypatch):
    args = ["bound", "--tiers", "lipschitz,arcs", "--no-figures"]
    clean = tmp_path / "clean"
    assert CliRunner().invoke(app, [*args, "--out", str(clean)]).exit_code == 0
    out = tmp_path / "resumed"
    run_tier = certify.run_tier

    def interrupted_at_arcs(name, *rest):
        if name == "arcs":
            raise KeyboardInterrupt
        return run_tier(name, *rest)

    monkeypatch.setattr(certify, "run_tier", interrupted_at_arcs)
    result = CliRunner().invoke(app, [*args, "--out", str(out)], env={"COLUMNS": "400"})
    assert result.exit_code == 130
    assert f"kept in {out / PARTIAL}: brute_force, tier_lipschitz. Run the same command again to resume" in result.output
    assert sorted(p.name for p in (out / PARTIAL).iterdir()) == ["brute_force.npz", "tier_lipschitz.npz"]
    assert not (out / "bound.json").exists()
    monkeypatch.setattr(certify, "run_tier", run_tier)
    assert CliRunner().invoke(app, [*args, "--out", str(out)]).exit_code == 0
    assert not (out / PARTIAL).exists()
    with np.load(clean / "bound.npz") as expected, np.load(out / "bound.npz") as resumed:
        assert sorted(expected.files) == sorted(resumed.files)
        for key in expected.files:
            np.testing.assert_array_equal(resumed[key], expected[key])
    summary = json.loads((out / "bound.json").read_text())
    assert summary["brute_force"]["accuracy"] == 1.0 and summary["tiers"][1]["certified_fraction"] > 0.99


def test_bound_command_on_a_full_disk_says_so_and_keeps_the_last_results(tmp_path, fill_disk):
    args = ["bound", "--tiers", "lipschitz", "--no-figures", "--out", str(tmp_path)]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = (tmp_path / "bound.npz").read_bytes()
    fill_disk()
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert (f"error: {tmp_path / PARTIAL / 'brute_force.npz'}: No space left on device, before any stage was saved"
            in result.output)
    assert (tmp_path / "bound.npz").read_bytes() == before


def test_report_interrupted_in_its_bounds_resumes_from_what_it_kept(tmp_path, monkeypatch):
    from conftest import random_model, small_config
    from quadlens import save_model

    cfg = small_config(p=13)
    model_file = tmp_path / "m.safetensors"
    save_model(model_file, cfg, {k: v.detach() for k, v in random_model(cfg).params().items()}, seed=0)
    page = tmp_path / "pages" / "m.html"
    partial = page.parent / f".m.html{PARTIAL}"
    run_tier = certify.run_tier
    ran = []

    def interrupted_at_arcs(name, *rest):
        if name == "arcs":
            raise KeyboardInterrupt
        ran.append(name)
        return run_tier(name, *rest)

    monkeypatch.setattr(certify, "run_tier", interrupted_at_arcs)
    result = CliRunner().invoke(app, ["report", str(model_file), "--out", str(page)], env={"COLUMNS": "400"})
    assert result.exit_code == 130 and not page.exists()
    assert f"kept in {partial}: brute_force, tier_lipschitz. Run the same command again to resume" in result.output

    def counted(name, *rest):
        ran.append(name)
        return run_tier(name, *rest)

    monkeypatch.setattr(certify, "run_tier", counted)
    result = CliRunner().invoke(app, ["report", str(model_file), "--out", str(page)])
    assert result.exit_code == 0, result.output
    assert ran == ["lipschitz", "arcs", "arcs_grouped", "quadratic", "quadratic_exact_c"]  # lipschitz ran once
    assert "arcs_grouped" in page.read_text() and not partial.exists()
