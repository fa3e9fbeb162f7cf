"""Imported models give the logits of the original definition; bad files are refused by name."""

import json
import math
import re

import pytest
import torch
from typer.testing import CliRunner

from conftest import naive_logits, random_model, small_config
from quadlens import load_model
from quadlens.cli import app
from quadlens.importers import (ImportFormatError, from_transformer_lens, import_model, load_state_dict,
                                to_transformer_lens)

P, D, H, DH, M = 7, 12, 2, 5, 16


def grokking_state(seed=0, n_ctx=3):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return {"embed.W_E": r(D, P), "pos_embed.W_pos": r(n_ctx, D), "unembed.W_U": r(D, P),
            "blocks.0.attn.W_Q": r(H, DH, D), "blocks.0.attn.W_K": r(H, DH, D), "blocks.0.attn.W_V": r(H, DH, D),
            "blocks.0.attn.W_O": r(D, H * DH), "blocks.0.attn.mask": torch.tril(torch.ones(n_ctx, n_ctx)),
            "blocks.0.mlp.W_in": r(M, D), "blocks.0.mlp.b_in": r(M), "blocks.0.mlp.W_out": r(D, M),
            "blocks.0.mlp.b_out": r(D)}


def grokking_reference(state, config):
    """The grokking-style definition, written from its description: logits [p, p, p]."""
    s = {k: v.double() for k, v in state.items()}
    kappa = config["attn_coeff"]
    a = torch.arange(P).repeat_interleave(P)
    b = torch.arange(P).repeat(P)
    x = s["embed.W_E"].T[torch.stack([a, b], 1)] + s["pos_embed.W_pos"][:2]  # [N, 2, d]
    q = torch.einsum("hkd,npd->nhpk", s["blocks.0.attn.W_Q"], x)
    k = torch.einsum("hkd,npd->nhpk", s["blocks.0.attn.W_K"], x)
    v = torch.einsum("hkd,npd->nhpk", s["blocks.0.attn.W_V"], x)
    scores = torch.einsum("nhqk,nhpk->nhqp", q, k) / math.sqrt(DH)
    pattern = kappa * scores.softmax(-1) + (1 - kappa)
    z = torch.einsum("nhqp,nhpk->nqhk", pattern, v).reshape(len(a), 2, H * DH)
    resid = x + torch.einsum("dz,nqz->nqd", s["blocks.0.attn.W_O"], z)
    pre = torch.einsum("md,nqd->nqm", s["blocks.0.mlp.W_in"], resid) + s["blocks.0.mlp.b_in"]
    act = torch.relu(pre) if config["act_fn"] == "ReLU" else torch.nn.functional.gelu(pre)
    resid = resid + torch.einsum("dm,nqm->nqd", s["blocks.0.mlp.W_out"], act) + s["blocks.0.mlp.b_out"]
    return (resid[:, 1] @ s["unembed.W_U"]).reshape(P, P, P)


@pytest.mark.parametrize("kappa, act", [(0.0, "ReLU"), (1.0, "ReLU"), (0.4, "GeLU")])
def test_grokking_checkpoint_imports_losslessly(tmp_path, kappa, act):
    state = grokking_state()
    config = {"C": P, "n_heads": H, "d_model": D, "n_layers": 1, "act_fn": act, "attn_coeff": kappa}
    torch.save(state, tmp_path / "model.pt")
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = import_model(tmp_path / "model.pt", "grokking", tmp_path / "config.json")
    assert model.cfg.attention_rate == 1 - kappa and model.cfg.constant_attention == (1.0, 1.0)
    with torch.no_grad():
        torch.testing.assert_close(model.all_logits(), grokking_reference(state, config), rtol=0, atol=1e-10)


def test_grokking_config_mismatch_names_key_and_shape(tmp_path):
    state = grokking_state()
    config = {"C": P + 1, "n_heads": H, "d_model": D, "n_layers": 1, "act_fn": "ReLU", "attn_coeff": 0.0}
    with pytest.raises(ImportFormatError, match=r"key 'embed.W_E' has shape \(12, 7\), the config needs \(12, 8\)"):
        import_model_from(state, config, tmp_path)
    with pytest.raises(ImportFormatError, match="config has no 'attn_coeff'"):
        import_model_from(state, {k: v for k, v in config.items() if k != "attn_coeff"}, tmp_path)
    state["blocks.0.ln1.w"] = torch.ones(D)
    config["C"] = P
    with pytest.raises(ImportFormatError, match=r"unexpected keys \['blocks.0.ln1.w'\]"):
        import_model_from(state, config, tmp_path)


GROKKING_CONFIG = {"C": P, "n_heads": H, "d_model": D, "n_layers": 1, "act_fn": "ReLU", "attn_coeff": 0.0}


@pytest.mark.parametrize("change, message", [
    ({"C": None}, "config has no 'C'"),
    ({"d_model": "twelve"}, "config d_model='twelve' is not a whole number"),
    ({"n_heads": 2.5}, "config n_heads=2.5 is not a whole number"),
    ({"n_layers": 2}, "config n_layers=2; quadlens models have one layer"),
    ({"act_fn": None}, "config has no 'act_fn'"),
    ({"act_fn": "SiLU"}, "config act_fn='SiLU', expected 'ReLU' or 'GeLU'"),
    ({"attn_coeff": "high"}, "config attn_coeff='high' is not a finite number"),
    ({"attn_coeff": 1.5}, r"config attn_coeff=1.5 lies outside \[0, 1\]"),
    ({"n_heads": 0}, "config n_heads=0 is not a whole number at least 1"),
    ({"d_model": -1}, "config d_model=-1 is not a whole number at least 1")])
def test_a_bad_grokking_config_is_named_by_key(tmp_path, change, message):
    config = {k: v for k, v in {**GROKKING_CONFIG, **change}.items() if v is not None}
    with pytest.raises(ImportFormatError, match=message):
        import_model_from(grokking_state(), config, tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"d_mlp": None}, "config has no 'd_mlp'"),
    ({"d_head": "5"}, "config d_head='5' is not a whole number"),
    ({"d_vocab": None, "d_vocab_out": None}, "config has neither 'd_vocab_out' nor 'd_vocab'"),
    ({"d_vocab": 8}, "d_vocab=8 differs from d_vocab_out=11"),
    ({"n_ctx": 3}, r"config n_ctx=3; quadlens reads \(a, b\) at positions 0, 1"),
    ({"n_layers": 2}, "config n_layers=2; quadlens models have one layer"),
    ({"attn_only": True}, "config attn_only=True; quadlens models have an MLP"),
    ({"act_fn": "solu"}, "config act_fn='solu'; quadlens supports relu and gelu")])
def test_a_bad_transformer_lens_config_is_named_by_key(change, message):
    state, config = to_transformer_lens(random_model(small_config(attention_rate=0.0)))
    config = {k: v for k, v in {**config, **change}.items() if v is not None}
    with pytest.raises(ImportFormatError, match=message):
        from_transformer_lens(state, config)


@pytest.mark.parametrize("key, tensor, message", [
    ("blocks.0.mlp.b_in", torch.full((M,), float("nan")), "key 'blocks.0.mlp.b_in' holds non-finite values"),
    ("unembed.W_U", torch.zeros(D, P, dtype=torch.complex64), "key 'unembed.W_U' holds complex values"),
    ("pos_embed.W_pos", None, "missing key 'pos_embed.W_pos'"),
    ("blocks.0.attn.W_Q", torch.zeros(H, DH), r"key 'blocks.0.attn.W_Q' has shape \(2, 5\); expected 3 dimensions"),
])
def test_a_bad_grokking_tensor_is_named_by_key(tmp_path, key, tensor, message):
    state = grokking_state()
    if tensor is None:
        del state[key]
    else:
        state[key] = tensor
    with pytest.raises(ImportFormatError, match=message):
        import_model_from(state, GROKKING_CONFIG, tmp_path)


def test_an_empty_zero_bias_of_transformer_lens_is_taken_as_zero():
    state, config = to_transformer_lens(random_model(small_config()))
    state["unembed.b_U"] = torch.zeros(0)
    assert from_transformer_lens(state, config).cfg.p == small_config().p


def test_a_config_file_that_is_not_an_object_is_named(tmp_path):
    torch.save(grokking_state(), tmp_path / "m.pt")
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(ImportFormatError, match="c.json: holds a JSON list, not an object: the config must be a JSON"):
        import_model(tmp_path / "m.pt", "grokking", tmp_path / "c.json")
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(ImportFormatError, match="c.json: not readable JSON"):
        import_model(tmp_path / "m.pt", "grokking", tmp_path / "c.json")


def import_model_from(state, config, tmp_path):
    torch.save(state, tmp_path / "m.pt")
    return import_model(tmp_path / "m.pt", "grokking", config)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"W": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ImportFormatError, match="not a plain tensor state dict"):
        import_model(tmp_path / "evil.pt", "grokking", {"C": P})


@pytest.mark.parametrize("overrides", [{"attention_rate": 0.0}, {}, {"constant_attention": (1.0, 1.0)}])
def test_transformer_lens_round_trip(overrides):
    model = random_model(small_config(**overrides), seed=4)
    state, config = to_transformer_lens(model)
    back = from_transformer_lens(state, config)
    with torch.no_grad():
        torch.testing.assert_close(back.all_logits(), model.all_logits(), rtol=0, atol=1e-12)
    assert back.cfg.attention_kind == model.cfg.attention_kind


def test_transformer_lens_state_dict_matches_tl_semantics():
    model = random_model(small_config(attention_rate=0.0), seed=5)
    state, config = to_transformer_lens(model)
    imported = from_transformer_lens(state, config)
    with torch.no_grad():
        torch.testing.assert_close(imported.all_logits(), naive_logits(model), rtol=0, atol=1e-12)


def test_transformer_lens_refuses_what_it_cannot_hold():
    state, config = to_transformer_lens(random_model(small_config(attention_rate=0.0)))
    bad = dict(state, **{"blocks.0.attn.b_O": torch.ones(config["d_model"])})
    with pytest.raises(ImportFormatError, match="'blocks.0.attn.b_O' is non-zero"):
        from_transformer_lens(bad, config)
    with pytest.raises(ImportFormatError, match="normalization_type='LN'"):
        from_transformer_lens(state, dict(config, normalization_type="LN"))
    with pytest.raises(ValueError, match="no TransformerLens equivalent"):
        to_transformer_lens(random_model(small_config(attention_rate=0.5)))


def test_import_and_export_commands(tmp_path):
    state = grokking_state()
    torch.save(state, tmp_path / "g.pt")
    config = GROKKING_CONFIG
    (tmp_path / "g.json").write_text(json.dumps(config))
    runner = CliRunner()
    result = runner.invoke(app, ["import", str(tmp_path / "g.pt"), "--format", "grokking", "--config",
                                 str(tmp_path / "g.json"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    model = load_model(tmp_path / "out" / "g.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model.all_logits(), grokking_reference(state, config), rtol=0, atol=1e-10)
    result = runner.invoke(app, ["info", str(tmp_path / "out" / "g.safetensors")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert re.search(rf"imported from +{re.escape(str(tmp_path / 'g.pt'))} \(grokking\)", result.output)
    assert re.search("epochs trained +not recorded", result.output)
    for wrong in ("tl.json", "tl.pt"):  # tl.json would have been overwritten by the config written beside it
        result = runner.invoke(app, ["export", str(tmp_path / "out" / "g.safetensors"), "--out", str(tmp_path / wrong)])
        assert result.exit_code == 2 and "name it *.safetensors" in result.output and not (tmp_path / wrong).exists()
    result = runner.invoke(app, ["export", str(tmp_path / "out" / "g.safetensors"), "--out", str(tmp_path / "tl.safetensors")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["import", str(tmp_path / "tl.safetensors"), "--format", "transformer-lens",
                                 "--config", str(tmp_path / "tl.json"), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    again = load_model(tmp_path / "again" / "tl.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(again.all_logits(), model.all_logits(), rtol=0, atol=1e-10)


def test_live_hooked_transformer():
    transformer_lens = pytest.importorskip("transformer_lens")
    from quadlens.importers import from_hooked_transformer

    model = random_model(small_config(attention_rate=0.0), seed=6)
    state, config = to_transformer_lens(model)
    live = transformer_lens.HookedTransformer(transformer_lens.HookedTransformerConfig(**config))
    live.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    imported = from_hooked_transformer(live)
    tokens = torch.cartesian_prod(torch.arange(model.cfg.p), torch.arange(model.cfg.p))
    with torch.no_grad():
        expected = live(tokens)[:, 1].double().reshape(model.cfg.p, model.cfg.p, model.cfg.p)
        torch.testing.assert_close(imported.all_logits(), expected, rtol=0, atol=1e-4)


def test_a_failed_export_leaves_the_file_it_would_replace(tmp_path, fill_disk):
    from quadlens import save_model

    cfg = small_config()
    other = tmp_path / "other.safetensors"
    save_model(other, cfg, {k: v.detach().float() for k, v in random_model(cfg).params().items()})
    out = tmp_path / "tl.safetensors"
    assert CliRunner().invoke(app, ["export", str(other), "--out", str(out)]).exit_code == 0
    before = out.read_bytes()
    fill_disk()
    result = CliRunner().invoke(app, ["export", "--out", str(out)], env={"COLUMNS": "400"})  # the bundled model
    assert result.exit_code == 2 and result.output == f"error: {out}: No space left on device\n"
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_the_weights_of_a_training_checkpoint_are_found_under_their_key(tmp_path, key):
    state = grokking_state()
    torch.save({key: state, "epoch": 7, "optimizer": {"lr": 1e-3}}, tmp_path / "run.pt")
    loaded = load_state_dict(tmp_path / "run.pt")
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_a_checkpoint_without_a_state_dict_lists_its_keys(tmp_path):
    torch.save({"weights": [torch.zeros(2)], "epoch": 7}, tmp_path / "odd.pt")
    with pytest.raises(ImportFormatError, match=r"odd.pt: expected a dict of tensors, or one under .*; found a dict "
                                                r"with keys \['epoch', 'weights'\]"):
        load_state_dict(tmp_path / "odd.pt")


def test_unreadable_files_are_named_without_unsafe_advice(tmp_path):
    as_json = tmp_path / "config.pt"
    as_json.write_text('{"C": 113}')
    with pytest.raises(ImportFormatError, match="config.pt: not a plain tensor state dict") as caught:
        load_state_dict(as_json)
    assert "weights_only" not in str(caught.value)  # torch's advice to load it unsafely is not passed on
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ImportFormatError, match="broken.safetensors: not a readable safetensors file"):
        load_state_dict(broken)


def test_imported_checkpoints_with_seeds_form_a_study(tmp_path):
    torch.save(grokking_state(), tmp_path / "g.pt")
    (tmp_path / "g.json").write_text(json.dumps(GROKKING_CONFIG))
    runner = CliRunner()
    args = ["import", str(tmp_path / "g.pt"), "--format", "grokking", "--config", str(tmp_path / "g.json"),
            "--out", str(tmp_path / "imported")]
    result = runner.invoke(app, [*args, "--seed", "3", "--name", "x"])
    assert result.exit_code == 2 and "give --name or --seed, not both" in result.output
    assert runner.invoke(app, [*args, "--name", "x"]).exit_code == 0  # a name alone: no seed to study it by
    result = runner.invoke(app, ["reproduce", "--models", str(tmp_path / "imported"), "--out", str(tmp_path / "study"),
                                 "--no-bounds"], env={"COLUMNS": "300"})
    assert result.exit_code != 0 and "it holds x.safetensors, whose names carry no seed" in result.output
    result = runner.invoke(app, [*args, "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "imported" / "seed_0003.safetensors").metadata["seed"] == 3
    result = runner.invoke(app, ["reproduce", "--models", str(tmp_path / "imported"), "--out", str(tmp_path / "study"),
                                 "--no-bounds"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "study" / "summary.json").read_text())["seeds"] == [3]
