import contextlib
import json
import os

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from quadlens.cli import app
from quadlens.explain import SCHEMA_VERSION as EXPLAIN_SCHEMA_VERSION
from quadlens.text import percent


def test_reproduce_writes_table_summary_and_resumes(tmp_path):
    args = ["reproduce", "--seeds", "0-1", "--p", "11", "--d-model", "16", "--n-heads", "2", "--d-head", "8",
            "--d-mlp", "24", "--epochs", "30", "--out", str(tmp_path)]
    without_bounds = CliRunner().invoke(app, args + ["--no-bounds"])
    assert without_bounds.exit_code == 0, without_bounds.output
    assert "bound_arcs_certified_fraction" not in json.loads((tmp_path / "results" / "seed_0000.json").read_text())
    result = CliRunner().invoke(app, args)  # the cached rows lack bounds: they are redone
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "models.parquet").to_pylist()
    assert [row["seed"] for row in table] == [0, 1]
    assert {"verdict", "accuracy", "gradient_symmetricity", "n_dead", "n_mixed", "n_parity",
            "bound_arcs_certified_fraction", "bound_arcs_violations"} <= set(table[0])
    assert all(row["bound_arcs_violations"] == 0 for row in table)
    csv_header = (tmp_path / "models.csv").read_text().splitlines()[0].split(",")
    assert csv_header[:7] == ["seed", "p", "d_mlp", "attention_rate", "act_fn", "verdict", "accuracy"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_models"] == 2 and sum(summary["verdicts"].values()) == 2 and summary["models_dir"] == "models"
    assert (tmp_path / "distributions.png").stat().st_size > 10_000
    page = tmp_path / "study.html"
    shown = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(page)])
    assert shown.exit_code == 0, shown.output
    models = page.read_text().split("<h2>Models</h2>")[1]
    assert models.count("<tr>") == 1 + len(table)  # the header, then one row per model
    for row in table:  # a share of inputs reads as a percentage, never rounded up to 100 %
        assert f"<td>{percent(row['bound_arcs_grouped_certified_fraction'])}</td>" in models
    cached = (tmp_path / "results" / "seed_0000.json").stat().st_mtime_ns
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "results" / "seed_0000.json").stat().st_mtime_ns == cached
    assert (tmp_path / "models.csv").read_text().splitlines()[0].split(",") == csv_header  # rows from the cache
    cache = tmp_path / "results" / "seed_0000.json"
    for stale in ({"explain_schema_version": 0}, {"seed": 7}):  # from another explain schema, or another seed's
        cache.write_text(json.dumps({**json.loads(cache.read_text()), **stale}))
        assert CliRunner().invoke(app, args).exit_code == 0
        assert {k: json.loads(cache.read_text())[k] for k in ("seed", "explain_schema_version")} == {
            "seed": 0, "explain_schema_version": EXPLAIN_SCHEMA_VERSION}
    result_file = tmp_path / "results" / "seed_0001.json"
    before = json.loads(result_file.read_text())
    result_file.write_text('{"seed": 1, "verd')  # cut short: that seed is analysed again
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert {k: v for k, v in json.loads(result_file.read_text()).items() if "seconds" not in k} == {
        k: v for k, v in before.items() if "seconds" not in k}
    fewer = CliRunner().invoke(app, [*args[:2], "1", *args[3:]])  # seed 0's row stays in the folder
    assert fewer.exit_code == 0, fewer.output
    assert json.loads((tmp_path / "summary.json").read_text())["seeds"] == [1]
    assert CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(page)]).exit_code == 0
    assert "<p class=plain>1 model;" in page.read_text()
    assert page.read_text().split("<h2>Models</h2>")[1].count("<tr>") == 2  # the header and seed 1's row alone
    (tmp_path / "summary.json").write_text('{"n_models": 1, "seeds": ["x"]}')
    shown = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(page)], env={"COLUMNS": "300"})
    assert shown.exit_code == 2 and "summary.json: 'seeds' is ['x'], not a list of whole numbers" in shown.output
    (tmp_path / "summary.json").write_text("[]")
    shown = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(page)])
    assert shown.exit_code == 2 and "summary.json: holds a JSON list, not an object" in shown.output


def test_process_pool_gives_the_same_rows(tmp_path):
    import math
    import shutil

    from conftest import small_config
    from quadlens.study import run_study
    from quadlens.train import TrainConfig

    cfg, train_cfg = small_config(), TrainConfig(epochs=30)
    run_study([0, 1, 2], tmp_path / "serial", cfg, train_cfg, device="cpu", progress=False)
    shutil.copytree(tmp_path / "serial" / "models", tmp_path / "pool" / "models")
    run_study([0, 1, 2], tmp_path / "pool", cfg, train_cfg, device="cpu", progress=False, workers=2)
    for seed in range(3):
        serial, pool = (json.loads((tmp_path / run / "results" / f"seed_{seed:04d}.json").read_text())
                        for run in ("serial", "pool"))
        assert serial.keys() == pool.keys()
        for key, value in serial.items():
            if key.endswith("seconds"):
                continue
            if isinstance(value, float):
                assert math.isclose(value, pool[key], rel_tol=1e-9, abs_tol=1e-12), key
            else:
                assert value == pool[key], key


POOL_OWNER = """
import os, time
from quadlens.study import process_pool

if __name__ == "__main__":
    with process_pool(1, 1) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        pool.submit(time.sleep, 600)  # a task for no one once this process is gone
        time.sleep(600)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads processes' states from /proc (Linux)")
def test_a_pools_workers_end_when_the_process_that_started_them_is_killed(tmp_path):
    import subprocess
    import sys
    import time

    script = tmp_path / "owner.py"
    script.write_text(POOL_OWNER)
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(owner.stdout.readline())
    owner.kill()  # SIGKILL: the pool is never shut down
    owner.wait()

    def running(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
        except FileNotFoundError:
            return False

    try:
        deadline = time.monotonic() + 30
        while running(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running(worker)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, 9)


def test_cluster_count_is_reported_when_the_picture_does_not_fit():
    import torch

    from quadlens import load_model
    from quadlens.study import model_row

    model = load_model()
    with torch.no_grad():
        model.b_in[:64] = -1e3  # 12.5 % dead neurons: more than the picture allows, the 4 clusters stay
    row = model_row(model, with_bounds=False)
    assert row["verdict"] == "does not fit" and "dead neurons" in row["reasons"]
    assert row["n_clusters"] == 4 and row["frequencies"] == ""


def test_a_study_goes_on_without_the_seeds_that_diverged(tmp_path, monkeypatch):
    import pytest

    from conftest import small_config
    from quadlens.study import run_study
    from quadlens.train import SeedBatch, TrainConfig

    real = SeedBatch.diverged
    monkeypatch.setattr(SeedBatch, "diverged", lambda self, i: "seed 1: diverged" if self.seeds[i] == 1 else
                        real(self, i))
    with pytest.warns(UserWarning, match=r"seed 1: diverged\. .* The study goes on with the other 2 seeds"):
        summary = run_study([0, 1, 2], tmp_path, small_config(), TrainConfig(epochs=20), device="cpu",
                            with_bounds=False, progress=False)
    assert summary["seeds"] == [0, 2] and summary["n_models"] == 2


def test_a_study_of_seeds_trained_elsewhere_takes_their_settings_and_knows_their_weights(tmp_path):
    import pytest
    import torch

    from conftest import small_config
    from quadlens import TrainConfig, load_model, save_model, train
    from quadlens.study import study_trained
    from quadlens.train import seed_path

    cfg = small_config()
    train(cfg, TrainConfig(epochs=30, lr=3e-3, weight_decay=0.5), seeds=[0, 1, 4], out_dir=tmp_path / "run",
          progress=False)  # settings that reproduce has no options for
    result = CliRunner().invoke(app, ["reproduce", "--models", str(tmp_path / "run"), "--seeds", "0,4", "--out",
                                      str(tmp_path / "study"), "--no-bounds"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "study" / "summary.json").read_text())
    assert summary["seeds"] == [0, 4] and not (tmp_path / "study" / "models").exists()
    assert summary["models_dir"] == "../run"  # relative, so that the two folders can move together
    shown = CliRunner().invoke(app, ["info", str(tmp_path / "study"), "--json"])
    assert json.loads(shown.output)["path"] == str(tmp_path / "run")
    shown = CliRunner().invoke(app, ["report", str(tmp_path / "run")], env={"COLUMNS": "300"})
    assert shown.exit_code == 2 and f"'quadlens reproduce --models {tmp_path / 'run'} --out STUDY'" in shown.output
    row = json.loads((tmp_path / "study" / "results" / "seed_0000.json").read_text())
    assert row["weights_sha256"] == load_model(seed_path(tmp_path / "run", 0)).fingerprint()
    assert study_trained(tmp_path / "run", tmp_path / "study", with_bounds=False, progress=False)["seeds"] == [0, 1, 4]
    with pytest.raises(ValueError, match="seed_0000.safetensors: not a folder of checkpoints written by"):
        study_trained(seed_path(tmp_path / "run", 0), tmp_path / "study", progress=False)
    with pytest.raises(ValueError, match=r"run: no finished checkpoint for seeds 2-3 \(finished: 0-1,4\)"):
        study_trained(tmp_path / "run", tmp_path / "study", seeds=[0, 2, 3], progress=False)
    retrained = load_model(seed_path(tmp_path / "run", 0))  # the folder's seed 0 replaced by other weights
    params = {name: t.detach() + 0.01 * torch.ones_like(t) for name, t in retrained.params().items()}
    save_model(seed_path(tmp_path / "run", 0), cfg, params, **{k: v for k, v in retrained.metadata.items()
                                                              if k in ("seed", "train_config", "metrics")})
    study_trained(tmp_path / "run", tmp_path / "study", seeds=[0], with_bounds=False, progress=False)
    row = json.loads((tmp_path / "study" / "results" / "seed_0000.json").read_text())
    assert row["weights_sha256"] == load_model(seed_path(tmp_path / "run", 0)).fingerprint() != retrained.fingerprint()


def test_reproduce_runs_brute_force_on_its_device_also_for_models_trained_elsewhere(tmp_path, monkeypatch):
    """``--device`` reaches the bounds' brute force (which would otherwise take CUDA where present), with --models
    too."""
    import quadlens.study
    from conftest import small_config
    from quadlens import TrainConfig, train

    train(small_config(), TrainConfig(epochs=20, eval_every=10), seeds=[0], out_dir=tmp_path / "run", progress=False)
    used, bound = [], quadlens.study.bound
    monkeypatch.setattr(quadlens.study, "bound", lambda model, device: used.append(device) or bound(model, device))
    result = CliRunner().invoke(app, ["reproduce", "--models", str(tmp_path / "run"), "--device", "cpu", "--out",
                                      str(tmp_path / "study")])
    assert result.exit_code == 0, result.output
    assert used == ["cpu"]
