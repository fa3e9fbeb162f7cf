import json

import numpy as np
import pytest
import torch

from conftest import naive_logits, random_model, small_config
from quadlens import ModelConfig, Transformer, separable_tables
from quadlens.model import forward, init_params, stack_params


@pytest.mark.parametrize("overrides", [
    {},
    {"act_fn": "gelu"},
    {"constant_attention": (1.0, 1.0)},
    {"attention_rate": 0.0},
    {"attention_rate": 0.3, "act_fn": "gelu"},
    {"attention_rate": 0.0, "constant_attention": (1.0, 1.0)},
])
def test_forward_matches_naive_transformer(overrides):
    model = random_model(small_config(**overrides), seed=3)
    with torch.no_grad():
        torch.testing.assert_close(model.all_logits(), naive_logits(model), rtol=0, atol=1e-12)


@pytest.mark.parametrize("overrides", [{}, {"act_fn": "gelu"}, {"constant_attention": (1.0, 1.0)}, {"p": 13}])
def test_separable_tables_reproduce_every_logit(overrides):
    model = random_model(small_config(**overrides), seed=1)
    tables = separable_tables(model)
    assert tables.F_a.shape == (model.cfg.p, model.cfg.d_mlp) and tables.W_L.shape == (model.cfg.d_mlp, model.cfg.p)
    np.testing.assert_allclose(tables.logits(), naive_logits(model).detach().numpy(), rtol=0, atol=1e-12)
    # a row a at a time (as at large p, where [p, p, d_mlp] pre-activations would not fit) gives the same logits
    np.testing.assert_allclose(tables._logits(direct=True, chunk_elements=1), tables.logits(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(tables.mlp_logits() + tables.direct_logits(), tables.logits(), rtol=0, atol=1e-12)
    rows = slice(3, 11)  # the rows a of a chunk alone, as the error ladder asks for them
    np.testing.assert_allclose(tables.logits(rows), tables.logits()[rows], rtol=0, atol=1e-12)
    np.testing.assert_allclose(tables._logits(direct=False, rows=rows, chunk_elements=1), tables.mlp_logits()[rows],
                               rtol=0, atol=1e-12)


def test_separable_tables_need_constant_attention():
    with pytest.raises(ValueError, match="constant attention"):
        separable_tables(random_model(small_config(attention_rate=0.5)))


def test_stacked_seeds_evaluate_independently():
    cfg = small_config()
    singles = [init_params(cfg, seed) for seed in (0, 1, 2)]
    a, b = torch.arange(cfg.p).repeat(2), torch.arange(2 * cfg.p) % cfg.p
    together = forward(stack_params(singles), cfg, a, b)
    for i, params in enumerate(singles):
        alone = forward({k: v[None] for k, v in params.items()}, cfg, a, b)[0]
        torch.testing.assert_close(together[i], alone)


def test_initialisation_is_seeded_and_gpt2_scaled():
    cfg = ModelConfig()
    first, again, other = init_params(cfg, 0), init_params(cfg, 0), init_params(cfg, 1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["W_in"], other["W_in"])
    assert abs(first["W_in"].std().item() - 0.8 / 128**0.5) < 0.005
    assert not first["b_in"].any() and not first["b_out"].any()


@pytest.mark.parametrize("bad, message", [
    ({"d_mlp": 0}, "d_mlp must be a whole number at least 1, got 0"),
    ({"d_mlp": True}, "d_mlp must be a whole number at least 1, got True"),
    ({"d_head": 8.0}, "d_head must be a whole number at least 1, got 8.0"),
    ({"act_fn": "tanh"}, "act_fn must be one of"),
    ({"attention_rate": 1.5}, "attention_rate must lie in"),
    ({"constant_attention": (1.0,)}, "two finite weights"),
    ({"constant_attention": (1.0, float("inf"))}, r"two finite weights \(positions 0, 1\), got \(1.0, inf\)"),
])
def test_bad_config_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        small_config(**bad)


def test_numpy_sizes_become_plain_ints():
    cfg = small_config(p=np.int64(7), d_mlp=np.int32(8))
    assert type(cfg.p) is int and type(cfg.d_mlp) is int and cfg == small_config(p=7, d_mlp=8)
    json.dumps(cfg.to_dict())  # the checkpoints' metadata


def test_parameter_count_and_names_follow_transformerlens():
    cfg = ModelConfig()
    shapes = cfg.param_shapes()
    assert shapes["W_E"] == (59, 128) and shapes["W_in"] == (128, 512) and shapes["W_U"] == (128, 59)
    assert shapes["W_Q"] == (4, 128, 32) and shapes["W_O"] == (4, 32, 128)
    assert cfg.n_params() == sum(int(np.prod(s)) for s in shapes.values())


def test_a_model_shows_its_sizes_and_seed():
    model = random_model(small_config(attention_rate=0.0))
    assert repr(model) == ("Transformer(p=11, d_model=16, n_heads=2, d_mlp=24, act_fn='relu', attention='learned', "
                           "dtype=torch.float64)")
    model.metadata["seed"] = 3
    assert repr(model).endswith("dtype=torch.float64, seed=3)")


def test_a_fingerprint_tells_weights_apart():
    model = random_model(small_config())
    same = Transformer(model.cfg, model.params())
    assert model.fingerprint() == same.fingerprint() and len(model.fingerprint()) == 64
    changed = {name: t.clone() for name, t in model.params().items()}
    changed["W_out"].data[3, 2] += 1e-12
    assert Transformer(model.cfg, changed).fingerprint() != model.fingerprint()
    as_float32 = Transformer(model.cfg, {name: t.float() for name, t in model.params().items()})
    assert as_float32.fingerprint() != model.fingerprint()
