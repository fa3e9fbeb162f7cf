import os
import re
import sys

import pytest

from conftest import small_config
from quadlens.sweep import config_name, grid, run_sweep
from quadlens.train import TrainConfig

TIMING = ("seconds", "ops")  # wall times differ run to run; counted ops and every figure must not


def comparable(rows):
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


def test_grid_and_names():
    configs = grid(small_config(), p=[7, 11], attention_rate=[1.0, 0.0], act_fn=["relu", "gelu"])
    assert len(configs) == 8 and len({config_name(c) for c in configs}) == 8


def test_pool_gives_the_same_results_as_serial(tmp_path):
    configs = grid(small_config(), p=[7, 11])
    train_cfg = TrainConfig(epochs=20, eval_every=10)
    heard = {"serial": [], "pool": []}
    serial = run_sweep(configs, [0, 1], tmp_path / "serial", train_cfg, workers=1,
                       on_done=lambda name, rows: heard["serial"].append((name, len(rows))))
    pooled = run_sweep(configs, [0, 1], tmp_path / "pool", train_cfg, workers=2,
                       on_done=lambda name, rows: heard["pool"].append((name, len(rows))))
    assert serial.keys() == pooled.keys()
    assert heard["serial"] == [(config_name(c), 2) for c in configs]  # each configuration heard once, as it ends
    assert sorted(heard["pool"]) == sorted(heard["serial"])
    import pyarrow.parquet as pq
    rows = [comparable(pq.read_table(tmp_path / name / "models.parquet").to_pylist()) for name in ("serial", "pool")]
    assert len(rows[0]) == 4 and rows[0] == rows[1]


def test_a_configuration_twice_is_refused(tmp_path):
    configs = grid(small_config(), p=[7, 7])
    with pytest.raises(ValueError, match="a configuration appears twice in the sweep: .'p7_dmlp24_rho1_relu'."):
        run_sweep(configs, [0], tmp_path, TrainConfig(epochs=20, eval_every=10))
    assert not (tmp_path / "p7_dmlp24_rho1_relu").exists()  # refused before anything ran


def test_the_device_trains_and_brute_forces_every_configuration(tmp_path, monkeypatch):
    """The sweep's device reaches training and the bounds' brute force (which would otherwise take CUDA where
    present); a GPU, which runs the configurations one after another, is refused with a pool or Ray."""
    import torch

    import quadlens.study
    import quadlens.sweep

    used = {"train": set(), "brute force": set()}
    train, bound = quadlens.study.train, quadlens.study.bound
    monkeypatch.setattr(quadlens.study, "train", lambda *a, device, **k: used["train"].add(device) or train(
        *a, device=device, **k))
    monkeypatch.setattr(quadlens.study, "bound", lambda model, device: used["brute force"].add(device) or bound(
        model, device))
    run_sweep(grid(small_config(), p=[7]), [0], tmp_path / "cpu", TrainConfig(epochs=20, eval_every=10))
    assert used == {"train": {"cpu"}, "brute force": {"cpu"}}

    class Started(Exception):
        pass

    def started(*task):
        raise Started(task)

    monkeypatch.setattr(quadlens.sweep, "run_task", started)
    with pytest.raises(Started) as task:  # one thread per task by default on the CPU
        run_sweep(grid(small_config(), p=[7]), [0], tmp_path / "cpu")
    assert task.value.args[0][-2:] == (1, "cpu")

    monkeypatch.setattr(quadlens.sweep, "resolve_device", lambda device: torch.device("cuda"))  # as if there were one
    for pooled in ({"workers": 2}, {"ray_address": "local"}):
        with pytest.raises(ValueError, match="a sweep on device 'cuda' runs its configurations one after another "
                                             "there; --workers and --ray are for sweeps on the CPU"):
            run_sweep(grid(small_config(), p=[7]), [0], tmp_path / "gpu", device="cuda", **pooled)
    assert not (tmp_path / "gpu").exists()  # refused before anything ran
    with pytest.raises(Started) as task:  # on a GPU, the explanations and bounds take every core by default
        run_sweep(grid(small_config(), p=[7]), [0], tmp_path / "gpu", device="cuda")
    assert task.value.args[0][-2:] == (os.cpu_count(), "cuda")


def test_ray_gives_the_same_results_as_serial(tmp_path):
    pytest.importorskip("ray")
    import pyarrow.parquet as pq

    configs = grid(small_config(), p=[7])
    train_cfg = TrainConfig(epochs=20, eval_every=10)
    run_sweep(configs, [0], tmp_path / "serial", train_cfg, workers=1)
    run_sweep(configs, [0], tmp_path / "ray", train_cfg, workers=2, ray_address="local")
    rows = [comparable(pq.read_table(tmp_path / name / "models.parquet").to_pylist()) for name in ("serial", "ray")]
    assert rows[0] == rows[1]


def test_a_sweep_on_ray_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from quadlens.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: importing it fails
    result = CliRunner().invoke(app, ["sweep", "--p", "7", "--d-mlp", "8", "--d-model", "8", "--n-heads", "1",
                                      "--d-head", "4", "--epochs", "5", "--seeds", "0", "--ray", "local",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and 'pip install -e ".[ray]"' in result.output
    assert not list(tmp_path.rglob("*.safetensors"))  # refused before anything was trained


def test_a_sweep_folder_gets_one_report_with_every_configuration(tmp_path):
    from typer.testing import CliRunner

    from quadlens.cli import app

    args = ["sweep", "--p", "7,11", "--d-mlp", "8", "--d-model", "8", "--n-heads", "1", "--d-head", "4",
            "--epochs", "5", "--seeds", "0-1", "--out", str(tmp_path / "sweep")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert 0 < result.output.index("p7_dmlp8_rho1_relu  ") < result.output.index("p11_dmlp8_rho1_relu  ")
    page = tmp_path / "sweep.html"
    shown = CliRunner().invoke(app, ["report", str(tmp_path / "sweep"), "--out", str(page)])
    assert shown.exit_code == 0, shown.output
    text = page.read_text()
    overview, *sections = text.split("<h2>")
    assert "<h1>Sweep: sweep</h1>" in overview and overview.count("<tr>") == 3  # the header and two configurations
    assert [section.split("</h2>")[0] for section in sections] == ["p7_dmlp8_rho1_relu", "p11_dmlp8_rho1_relu"]
    for section in sections:  # each configuration's study: two models, their distributions
        assert section.split("<h3>Models</h3>")[1].count("<tr>") == 3 and section.count("<img") == 1
    shown = CliRunner().invoke(app, ["info", str(tmp_path / "sweep")], env={"COLUMNS": "300"})
    assert shown.exit_code == 2 and ("a sweep of 2 configurations (p7_dmlp8_rho1_relu, p11_dmlp8_rho1_relu); 'quadlens "
                                     f"info {tmp_path / 'sweep' / 'p7_dmlp8_rho1_relu'}' describes one") in shown.output
    shown = CliRunner().invoke(app, ["info", str(tmp_path / "sweep" / "p7_dmlp8_rho1_relu")], env={"COLUMNS": "300"})
    assert shown.exit_code == 0 and re.search(r"finished +2 seeds \(0-1\)", shown.output)
