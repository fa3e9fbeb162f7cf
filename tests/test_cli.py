import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import abandoned_write, examples, random_model, small_config
import quadlens
from quadlens import save_model
from quadlens.cli import app, parse_seeds
from quadlens.text import percent, seed_ranges

runner = CliRunner()


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,4,7-9") == [1, 4, 7, 8, 9]
    assert parse_seeds("5") == [5]


@pytest.mark.parametrize("seeds, text", [([0, 1, 2, 3, 7, 9, 10], "0-3,7,9-10"), ([5], "5"), ([4, 2, 3, 3], "2-4")])
def test_seed_ranges_are_written_as_seeds_are_given(seeds, text):
    assert seed_ranges(seeds) == text and parse_seeds(text) == sorted(set(seeds))


def test_info_on_a_training_folder_lists_its_seeds_and_interrupted_batches(tmp_path):
    from test_train import QUICK, Interrupt, interrupt_at

    cfg, models = small_config(), tmp_path / "models"
    quadlens.train(cfg, QUICK, seeds=[0, 1, 3], out_dir=models, progress=False)
    with pytest.MonkeyPatch.context() as monkeypatch:
        interrupt_at(monkeypatch, 25)
        with pytest.raises(Interrupt):
            quadlens.train(cfg, QUICK, seeds=[5, 6], out_dir=models, batch_size=2, progress=False)
    (models / "seed_0009.safetensors").write_bytes(b"cut short")
    (models / "seed_0004.safetensors").write_bytes((models / "seed_0000.safetensors").read_bytes())
    abandoned = abandoned_write(models / "seed_0007.safetensors")
    abandoned_write(models / "seed_0008.safetensors", pid=os.getpid())  # a write going on
    (tmp_path / "summary.json").write_text("{}")  # as in a folder written by reproduce: its models are read
    result = runner.invoke(app, ["info", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert re.search(r"abandoned +1 temporary file of killed writes \(0.0 MB\)", result.output)
    assert re.search(r"finished +3 seeds \(0-1,3\)", result.output)
    assert re.search(r"interrupted +seeds 5-6 at epoch 20 of 40", result.output)
    assert re.search(r"unreadable +.*seed_0009.safetensors: not a readable safetensors file", result.output)
    assert re.search(r"unreadable +.*seed_0004.safetensors: holds seed 0, not the seed its name gives", result.output)
    status = json.loads(runner.invoke(app, ["info", str(tmp_path), "--json"]).output)
    assert [row["seed"] for row in status["finished"]] == [0, 1, 3]
    assert status["interrupted"] == [{"seeds": [5, 6], "epoch": 20, "file": "resume_0005-0006_2.safetensors"}]
    assert status["abandoned_writes"] == [{"file": abandoned.name, "bytes": abandoned.stat().st_size}]
    assert quadlens.ModelConfig.from_dict(status["model_config"]) == cfg and status["train_config"]["epochs"] == 40


ODD_JSON = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(allow_nan=True), st.text(max_size=3),
                    st.lists(st.integers(-2, 3), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed_meta=st.fixed_dictionaries({}, optional={
           "seed": st.one_of(st.just(2), ODD_JSON), "epochs_trained": ODD_JSON,
           "metrics": st.one_of(ODD_JSON, st.dictionaries(st.just("test_accuracy"), ODD_JSON))}),
       resume_meta=st.fixed_dictionaries({}, optional={"seeds": st.one_of(st.just([2]), ODD_JSON),
                                                       "epoch": st.one_of(st.integers(0, 99), ODD_JSON)}),
       run_json=st.one_of(st.text(max_size=8), ODD_JSON.map(json.dumps),
                          st.fixed_dictionaries({"model_config": ODD_JSON, "train_config": ODD_JSON}).map(json.dumps)))
def test_info_on_a_damaged_folder_lists_what_it_cannot_read(tmp_path, seed_meta, resume_meta, run_json):
    """Whatever the headers and run.json hold, info lists each file as read or names it as unreadable."""
    import torch

    from quadlens.checkpoint import save_tensors

    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    save_tensors(folder / "seed_0002.safetensors", {"W_E": torch.zeros(1)}, seed_meta)
    save_tensors(folder / "resume_0002-0002_1.safetensors", {"param.W_E": torch.zeros(1)}, resume_meta)
    (folder / "run.json").write_text(run_json)
    for args in (["info", str(folder)], ["info", str(folder), "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    unreadable = {row["file"] for row in status["unreadable"]}
    assert ([row["seed"] for row in status["finished"]] == [2]) != ("seed_0002.safetensors" in unreadable)
    assert len(status["interrupted"]) + ("resume_0002-0002_1.safetensors" in unreadable) == 1
    assert (status["model_config"] is None) == ("run.json" in unreadable)


def test_info_on_a_folder_without_a_run_says_so(tmp_path):
    result = runner.invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 2
    assert "no run.json, checkpoints (seed_NNNN.safetensors) or resume states" in result.output
    assert "temporary file" not in result.output
    left = abandoned_write(tmp_path / "bound.json")  # a killed 'quadlens bound' that nothing will run again
    abandoned_write(tmp_path / "explain.json", pid=os.getpid())  # a write going on
    result = runner.invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 2
    assert f"It holds 1 temporary file of killed writes, safe to delete: {left.name}." in result.output
    (tmp_path / "run.json").write_text('{"model_config": {"p": "x"}, "train_config": {}}')
    result = runner.invoke(app, ["info", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["unreadable"][0]["error"].startswith(f"{tmp_path / 'run.json'}: not the configs")


def test_info_describes_a_checkpoint_as_json(tmp_path):
    cfg = small_config()
    path = tmp_path / "m.safetensors"
    save_model(path, cfg, {k: v.detach().float() for k, v in random_model(cfg).params().items()}, seed=3)
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["model_config"]["p"] == 11 and summary["seed"] == 3
    assert summary["weights_sha256"] == quadlens.load_model(path).fingerprint()
    assert summary["attention_kind"] == "constant" and summary["n_params"] == cfg.n_params()
    assert 0.0 <= summary["accuracy_all_inputs"] <= 1.0


def test_info_shows_a_metric_that_was_not_finite_as_a_dash(tmp_path):
    """A loss that overflowed is kept as null in JSON; the table shows it as unknown instead of failing."""
    cfg = small_config()
    path = tmp_path / "m.safetensors"
    save_model(path, cfg, {k: v.detach().float() for k, v in random_model(cfg).params().items()}, seed=3,
               metrics={"train_loss": float("nan"), "test_accuracy": 1.0})
    result = runner.invoke(app, ["info", str(path)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert re.search(r"train loss +- ", result.output) and re.search(r"test accuracy +100\.0 %", result.output)


def test_info_on_a_broken_file_names_it(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.output  # whole, not broken at the terminal's width


def test_tables_keep_every_figure_whole_at_80_columns(tmp_path):
    """A log or a pipe gets 80 columns, where rich would cut a cell that does not fit with '…'."""
    result = runner.invoke(app, ["explain", "--out", str(tmp_path), "--no-figures"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    rows = {cells[0]: cells for cells in map(str.split, result.output.splitlines()) if cells}
    explanation = json.loads((tmp_path / "explain.json").read_text())
    for cluster in explanation["clusters"]:
        row = rows[str(cluster["frequency"])]
        assert row[1:4] == [str(cluster["n_neurons"]), f"{cluster['total_weight']:.1f}",
                            f"{cluster['doubling_resultant']:.5f}"]
    levels = [line.split() for line in result.output.splitlines() if re.match(r" ?L(\d|inf) ", line)]
    expected = explanation["ladder"] + explanation["ablation"]
    assert [cells[-3] for cells in levels] == [f"{level['min_margin']:.3f}" for level in expected]
    assert [" ".join(cells[-2:]) for cells in levels] == [percent(level["accuracy"]) for level in expected]
    result = runner.invoke(app, ["info"], env={"COLUMNS": "80"})
    assert result.exit_code == 0 and "…" not in result.output
    assert re.search(r"^file: \S+pizza_p59_seed0\.safetensors$", result.output, re.MULTILINE)


def test_train_command_writes_checkpoints_and_resumes(tmp_path):
    args = ["train", "--seeds", "0-1", "--p", "7", "--d-model", "8", "--n-heads", "1", "--d-head", "4",
            "--d-mlp", "8", "--epochs", "20", "--eval-every", "10", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("seed_*.safetensors")) == ["seed_0000.safetensors",
                                                                          "seed_0001.safetensors"]
    assert f"quadlens reproduce --models {tmp_path} --out {tmp_path}-study" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output


def test_ctrl_c_says_what_is_kept_and_how_to_resume(tmp_path, monkeypatch):
    from quadlens import study
    from quadlens.train import SeedBatch

    run, real_step, real_analyse = tmp_path / "run", SeedBatch.step, study._analyse

    def step(batch):
        if batch.seeds == [1] and batch.epoch == 15:
            raise KeyboardInterrupt
        real_step(batch)

    monkeypatch.setattr(SeedBatch, "step", step)
    args = ["train", "--seeds", "0-1", "--p", "7", "--d-model", "8", "--n-heads", "1", "--d-head", "4", "--d-mlp", "8",
            "--epochs", "20", "--eval-every", "10", "--checkpoint-every", "10", "--out", str(run)]
    result = runner.invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 130
    assert (f"interrupted; kept seeds 0 trained in {run}; seeds 1 at epoch 10 in {run}. Run the same command again "
            f"to resume") in result.output
    monkeypatch.setattr(SeedBatch, "step", real_step)
    assert runner.invoke(app, args).exit_code == 0
    analysed = []

    def analyse(model, *rest, **options):
        if analysed:
            raise KeyboardInterrupt
        analysed.append(model.metadata["seed"])
        return real_analyse(model, *rest, **options)

    monkeypatch.setattr(study, "_analyse", analyse)
    result = runner.invoke(app, ["reproduce", "--models", str(run), "--no-bounds", "--out", str(tmp_path / "study")],
                           env={"COLUMNS": "400"})
    assert result.exit_code == 130
    assert (f"interrupted; kept seeds 0-1 trained in {run}; 1 model explained in {tmp_path / 'study' / 'results'}. "
            f"Run the same command again to resume") in result.output


def test_warnings_are_one_line_each(tmp_path):
    args = ["train", "--seeds", "0", "--p", "9", "--d-model", "8", "--n-heads", "1", "--d-head", "4", "--d-mlp", "8",
            "--epochs", "5", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: p=9 is not prime") == 1 and "UserWarning" not in result.output


def test_train_command_reports_bad_arguments():
    result = runner.invoke(app, ["train", "--p", "2"])
    assert result.exit_code == 2 and "p must be at least 3" in result.output
    result = runner.invoke(app, ["train", "--seeds", "a-b"])
    assert result.exit_code == 2 and "seeds must look like" in result.output
    result = runner.invoke(app, ["train", "--attention", "sometimes"])
    assert result.exit_code == 2 and "attention must be" in result.output
    result = runner.invoke(app, ["train", "--constant-attention", "a,b"])
    assert result.exit_code == 2 and "--constant-attention must be two numbers" in result.output
    result = runner.invoke(app, ["train", "--lr", "nan"])
    assert result.exit_code == 2 and "lr must be a finite number above 0, got nan" in result.output


def test_bound_runs_the_chosen_tiers_and_names_an_unknown_one(tmp_path):
    result = runner.invoke(app, ["bound", "--tiers", "quadratic, arcs", "--out", str(tmp_path), "--no-figures"])
    assert result.exit_code == 0, result.output
    tiers = json.loads((tmp_path / "bound.json").read_text())["tiers"]
    assert [t["name"] for t in tiers] == ["arcs", "quadratic"]  # cheapest first, whatever the order asked
    assert all(t["violations"] == 0 for t in tiers)
    result = runner.invoke(app, ["bound", "--tiers", "arcs,fastest", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "fastest" in result.output and "arcs_grouped" in result.output
    assert not (tmp_path / "x").exists()


def test_figure_format_is_checked_before_any_work_and_names_the_files(tmp_path):
    result = runner.invoke(app, ["bound", "--figure-format", "jpeg", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "'jpeg' is not one of png, pdf, svg" in re.sub(r"[│\s]+", " ", result.output)
    assert not (tmp_path / "x").exists()
    result = runner.invoke(app, ["bound", "--tiers", "arcs", "--no-brute-force", "--figure-format", "pdf",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.pdf")) == ["bounds.pdf", "frontier.pdf"]


def test_bound_without_brute_force_says_what_its_fractions_mean(tmp_path):
    result = runner.invoke(app, ["bound", "--tiers", "arcs", "--no-brute-force", "--out", str(tmp_path), "--no-figures"])
    assert result.exit_code == 0, result.output
    assert "lower bound on the model's accuracy" in " ".join(result.output.split())
    assert re.search(r"arcs( +\S+){2} +\S+ % +- +- +- *$", result.output, re.MULTILINE)  # B/truth, max, viol. unknown
    data = json.loads((tmp_path / "bound.json").read_text())
    assert data["brute_force"] is None and data["tiers"][0]["certified_fraction"] > 0.99
    assert data["model"] == quadlens.load_model().identity() and data["model"]["seed"] == 0  # which model was bounded


def test_bad_devices_and_integer_lists_are_named(tmp_path):
    import torch

    result = runner.invoke(app, ["train", "--device", "tpu", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown device 'tpu'" in " ".join(result.output.split())
    if not torch.cuda.is_available():
        for command in ("bound", "sweep"):
            result = runner.invoke(app, [command, "--device", "cuda", "--out", str(tmp_path)])
            assert result.exit_code == 2 and "no CUDA device" in " ".join(result.output.split())
        with pytest.raises(ValueError, match="device 'cuda': this machine has no CUDA device"):
            quadlens.bound(quadlens.load_model(), device="cuda", tiers="lipschitz")
    with pytest.raises(ValueError, match="unknown device 'tpu'; use auto, cpu, cuda or cuda:N"):
        quadlens.train(small_config(), seeds=[0], device="tpu", progress=False)
    result = runner.invoke(app, ["sweep", "--p", "31", "--d-mlp", "abc", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--d-mlp must be integers" in " ".join(result.output.split())
    result = runner.invoke(app, ["reproduce", "--seeds", "0", "--workers", "0", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--workers" in result.output
    result = runner.invoke(app, ["explain", str(tmp_path)])
    assert result.exit_code == 2 and "a folder, not a checkpoint file" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_file_in_the_way_of_an_output_is_named_before_any_work(tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    for command, out in [("train", blocker), ("explain", blocker), ("bound", blocker / "deeper"),
                         ("reproduce", blocker), ("sweep", blocker), ("export", blocker / "model.safetensors"),
                         ("report", tmp_path)]:
        result = runner.invoke(app, [command, "--out", str(out)], env={"COLUMNS": "400"})  # paths unbroken
        message = " ".join(result.output.replace("│", " ").split())
        assert result.exit_code == 2, (command, result.output)
        expected = "is a folder; give the file's name" if out == tmp_path else f"{blocker.name} is a file, not a folder"
        assert expected in message, (command, message)
    assert blocker.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [blocker]


def test_an_output_folder_that_cannot_be_written_is_named_before_any_work(tmp_path, monkeypatch):
    import tempfile

    def read_only(dir):
        raise OSError(30, "Read-only file system", str(dir))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    for command, out in [("explain", tmp_path / "a" / "b"), ("export", tmp_path / "c" / "model.safetensors")]:
        result = runner.invoke(app, [command, "--out", str(out)], env={"COLUMNS": "400"})
        message = " ".join(result.output.replace("│", " ").split())
        assert result.exit_code == 2 and f"cannot write in {out.parent if command == 'export' else out}" in message
        assert "Read-only file system" in message
    assert list(tmp_path.iterdir()) == []  # the folders the check made are gone again


def test_a_full_disk_is_one_line_that_names_the_file_and_replaces_nothing(tmp_path, fill_disk):
    assert runner.invoke(app, ["explain", "--no-figures", "--out", str(tmp_path)]).exit_code == 0
    before = (tmp_path / "explain.json").read_bytes()
    fill_disk()
    result = runner.invoke(app, ["explain", "--no-figures", "--out", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and result.output == f"error: {tmp_path / 'explain.json'}: No space left on device\n"
    assert (tmp_path / "explain.json").read_bytes() == before
    assert list(tmp_path.iterdir()) == [tmp_path / "explain.json"]
