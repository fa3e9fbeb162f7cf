import json
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from conftest import abandoned_write, examples, random_model, small_config
from quadlens import CheckpointError, load_model, save_model
from quadlens.checkpoint import load_tensors, save_tensors


def float32_params(cfg):
    return {k: v.float() for k, v in random_model(cfg).params().items()}


@pytest.fixture
def saved(tmp_path):
    cfg = small_config()
    path = tmp_path / "m.safetensors"
    save_model(path, cfg, {k: v.detach() for k, v in float32_params(cfg).items()}, seed=7)
    return path


def test_round_trip_keeps_weights_config_and_metadata(saved):
    model = load_model(saved)
    assert model.cfg == small_config() and model.metadata["seed"] == 7
    original = float32_params(small_config())
    assert all(torch.equal(getattr(model, k).detach(), v.detach()) for k, v in original.items())
    sidecar = json.loads(saved.with_suffix(".json").read_text())
    assert sidecar == model.metadata


def test_truncated_file_is_refused_with_its_name(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{saved.name}.*truncated or corrupt"):
        load_model(saved)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_model(tmp_path / "nope.safetensors")


def _rewrite(path, mutate_tensors=None, mutate_meta=None):
    tensors, meta = load_tensors(path)
    if mutate_tensors:
        mutate_tensors(tensors)
    if mutate_meta:
        mutate_meta(meta)
    save_tensors(path, tensors, meta)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.update(W_in=torch.zeros(3, 3)), r"tensor 'W_in' has shape \(3, 3\), config needs \(16, 24\)"),
    (lambda t: t.pop("W_U"), r"missing \['W_U'\]"),
    (lambda t: t.update(extra=torch.zeros(2)), r"unexpected \['extra'\]"),
    (lambda t: t.update(W_E=t["W_E"].double()), "tensor 'W_E' has dtype torch.float64"),
    (lambda t: t["b_in"].__setitem__(0, float("nan")), "tensor 'b_in' holds non-finite values"),
])
def test_mismatched_tensors_are_refused(saved, mutate, message):
    _rewrite(saved, mutate_tensors=mutate)
    with pytest.raises(CheckpointError, match=message):
        load_model(saved)


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.update(format="other"), "metadata 'format'"),
    (lambda m: m.update(format_version=99), "format_version 99 is not supported"),
    (lambda m: m["model_config"].update(d_mlp=-1), "invalid 'model_config'"),
    (lambda m: m["model_config"].update(colour="red"), "unknown model config keys"),
    (lambda m: m.update(dtype="int8"), "metadata 'dtype'"),
    (lambda m: m.update(dtype=["float32"]), r"metadata 'dtype' is \['float32'\], expected one of"),
    (lambda m: m.update(seed="x"), "metadata 'seed' is 'x', not a whole number at least 0"),
    (lambda m: m.update(epochs_trained=-1), "metadata 'epochs_trained' is -1, not a whole number at least 0"),
    (lambda m: m.update(metrics=[1, 2]), "metadata 'metrics' is a JSON list, not an object"),
    (lambda m: m.update(metrics={"train_loss": "low"}), "metadata 'metrics' has train_loss='low', not a number"),
])
def test_bad_metadata_is_refused(saved, mutate, message):
    _rewrite(saved, mutate_meta=mutate)
    with pytest.raises(CheckpointError, match=message):
        load_model(saved)


ODD_VALUES = st.sampled_from([None, -1, 0, 1.5, "x", True, [], {}, [1, "a"], {"a": None}, 10**30])


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_checkpoint_loads_or_is_refused_by_name(saved, data):
    """Damage anywhere (bytes in the header or the tensors, or any metadata value, nested or not): loading gives a
    model with finite logits, or a CheckpointError, never another exception."""
    original = saved.read_bytes()
    if data.draw(st.booleans(), label="edit the metadata"):
        tensors, meta = load_tensors(saved)
        key = data.draw(st.sampled_from(sorted(meta)), label="key")
        if isinstance(meta[key], dict) and meta[key] and data.draw(st.booleans(), label="nested"):
            meta[key][data.draw(st.sampled_from(sorted(meta[key])), label="inner key")] = data.draw(ODD_VALUES)
        else:
            meta[key] = data.draw(ODD_VALUES)
        save_tensors(saved, tensors, meta)
    else:
        damaged = bytearray(original)
        for _ in range(data.draw(st.integers(1, 8), label="bytes")):
            damaged[data.draw(st.integers(0, len(damaged) - 1), label="at")] = data.draw(st.integers(0, 255))
        saved.write_bytes(bytes(damaged[:data.draw(st.integers(1, len(damaged)), label="kept")]))
    try:
        with torch.no_grad():
            assert load_model(saved).all_logits().isfinite().all()
    except CheckpointError:
        pass
    finally:
        saved.write_bytes(original)


def test_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a quadlens file .* converts with 'quadlens import'"):
        load_model(path)


@pytest.mark.parametrize("text, message", [("{not json", "metadata 'quadlens' is not valid JSON"),
                                            ("[1]", "metadata 'quadlens' is a JSON list, not an object")])
def test_metadata_that_is_not_a_json_object_is_refused(tmp_path, text, message):
    path = tmp_path / "odd.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"quadlens": text})
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_pickle_file_is_never_unpickled(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"W_E": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(path)


def test_failed_write_leaves_the_good_file(saved, fill_disk):
    before = saved.read_bytes()
    fill_disk()
    cfg = small_config()
    with pytest.raises(OSError, match=re.escape(f"No space left on device: '{saved}'")):  # the file, not its stand-in
        save_model(saved, cfg, {k: torch.zeros_like(v) for k, v in float32_params(cfg).items()})
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir() if p.suffix == ".tmp"] == []
    load_model(saved)


def test_saving_mismatched_params_is_refused(tmp_path):
    cfg = small_config()
    params = float32_params(cfg)
    params["W_E"] = torch.zeros(5, 5)
    with pytest.raises(CheckpointError, match="tensor 'W_E' has shape"):
        save_model(tmp_path / "x.safetensors", cfg, params)
    assert not (tmp_path / "x.safetensors").exists()


def test_a_failed_figure_write_leaves_the_old_figure(tmp_path, fill_disk):
    from matplotlib.figure import Figure

    from quadlens.figures import save

    path = tmp_path / "figure.png"
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1])
    save(fig, path)
    before = path.read_bytes()
    ax.plot([0, 1], [1, 0])
    fill_disk()
    with pytest.raises(OSError, match=re.escape(f"No space left on device: '{path}'")):
        save(fig, path)
    assert path.read_bytes() == before and before[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


KILLED_WRITER = """
import sys, time
import quadlens.files
quadlens.files.os.fsync = lambda fd: (print("writing", flush=True), time.sleep(600))  # held inside the write
from quadlens import load_model, save_model
model = load_model(sys.argv[1])
save_model(sys.argv[1], model.cfg, {k: 0 * v.detach() for k, v in model.params().items()}, seed=8)
"""


def test_a_write_killed_midway_leaves_the_good_file_and_the_next_write_removes_its_remains(saved):
    import os
    import subprocess
    import sys

    before = saved.read_bytes()
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(saved)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.kill()  # SIGKILL: no clean-up of its own runs
    writer.wait()
    remains = [p for p in saved.parent.iterdir() if p.suffix == ".tmp"]
    assert len(remains) == 1 and f"-{writer.pid}-" in remains[0].name
    assert saved.read_bytes() == before and load_model(saved).metadata["seed"] == 7
    others = [abandoned_write(saved, pid=os.getpid()),  # a live process's write, not to be touched
              abandoned_write(saved, host="elsewhere", pid=writer.pid),  # another host's: its pids are not ours
              abandoned_write(saved.parent / "other.safetensors", pid=writer.pid)]  # left to that file's writes
    model = load_model(saved)
    save_model(saved, model.cfg, {k: v.detach() for k, v in model.params().items()}, seed=9)
    assert load_model(saved).metadata["seed"] == 9
    assert sorted(p for p in saved.parent.iterdir() if p.suffix == ".tmp") == sorted(others)
