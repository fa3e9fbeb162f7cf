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
    serial = run_sweep(configs, [0, 1], tmp_path / "serial", train_cfg, workers=1)
    pooled = run_sweep(configs, [0, 1], tmp_path / "pool", train_cfg, workers=2)
    assert serial.keys() == pooled.keys()
    import pyarrow.parquet as pq
    rows = [comparable(pq.read_table(tmp_path / name / "models.parquet").to_pylist()) for name in ("serial", "pool")]
    assert len(rows[0]) == 4 and rows[0] == rows[1]


def test_ray_gives_the_same_results_as_serial(tmp_path):
    pytest.importorskip("ray")
    import pyarrow.parquet as pq

    configs = grid(small_config(), p=[7])
    train_cfg = TrainConfig(epochs=20, eval_every=10)
    run_sweep(configs, [0], tmp_path / "serial", train_cfg, workers=1)
    run_sweep(configs, [0], tmp_path / "ray", train_cfg, workers=2, ray_address="local")
    rows = [comparable(pq.read_table(tmp_path / name / "models.parquet").to_pylist()) for name in ("serial", "ray")]
    assert rows[0] == rows[1]
