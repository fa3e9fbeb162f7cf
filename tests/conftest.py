"""Shared helpers: small configurations, an independent naive reference transformer, and how many examples each
property test draws."""

import errno
import math
import os

import pytest
import torch

from quadlens.model import ModelConfig, Transformer, init_params

SOAK = os.environ.get("QUADLENS_SOAK", "1")
if not SOAK.isdigit() or int(SOAK) < 1:
    raise ValueError(f"QUADLENS_SOAK must be a whole number of at least 1 (a multiple of each property test's "
                     f"examples), not {SOAK!r}")


def examples(count: int) -> int:
    """How many examples a property test draws: ``count``, times QUADLENS_SOAK for a long soundness run
    (``QUADLENS_SOAK=100 python -m pytest tests/test_bounds.py tests/test_arcs.py``)."""
    return count * int(SOAK)


def soaking() -> bool:
    """Whether this is a long soundness run (QUADLENS_SOAK above 1), which also takes the slow large models."""
    return int(SOAK) > 1


def small_config(**overrides) -> ModelConfig:
    return ModelConfig(**{"p": 11, "d_model": 16, "n_heads": 2, "d_head": 8, "d_mlp": 24, **overrides})


def random_model(cfg: ModelConfig, seed: int = 0, bias_scale: float = 0.3) -> Transformer:
    """A float64 model with non-zero MLP biases, so every term of the forward pass is exercised."""
    params = {k: v.double() for k, v in init_params(cfg, seed).items()}
    generator = torch.Generator().manual_seed(seed + 1000)
    for name in ("b_in", "b_out"):
        params[name] = torch.randn(params[name].shape, generator=generator, dtype=torch.float64) * bias_scale
    return Transformer(cfg, params)


def naive_logits(model: Transformer) -> torch.Tensor:
    """The transformer written out per input pair, as in TransformerLens: logits [p, p, p] (a, b, c)."""
    cfg, P = model.cfg, model.params()
    p = cfg.p
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    x = torch.stack([P["W_E"][a] + P["W_pos"][0], P["W_E"][b] + P["W_pos"][1]], dim=1)  # [N, 2, d]
    q = torch.einsum("npd,hdk->nhpk", x, P["W_Q"])
    k = torch.einsum("npd,hdk->nhpk", x, P["W_K"])
    v = torch.einsum("npd,hdk->nhpk", x, P["W_V"])
    scores = torch.einsum("nhk,nhjk->nhj", q[:, :, 1], k) / math.sqrt(cfg.d_head)
    constant = torch.tensor(cfg.constant_attention, dtype=x.dtype)
    pattern = cfg.attention_rate * constant + (1 - cfg.attention_rate) * scores.softmax(-1)
    z = torch.einsum("nhj,nhjk->nhk", pattern, v)
    resid = x[:, 1] + torch.einsum("nhk,hkd->nd", z, P["W_O"])
    pre = resid @ P["W_in"] + P["b_in"]
    hidden = torch.relu(pre) if cfg.act_fn == "relu" else torch.nn.functional.gelu(pre)
    return ((resid + hidden @ P["W_out"] + P["b_out"]) @ P["W_U"]).reshape(p, p, p)


@pytest.fixture(scope="session")
def bundled():
    from quadlens import load_model

    return load_model()


@pytest.fixture(scope="session")
def bundled_explanation(bundled):
    from quadlens import explain

    return explain(bundled)


@pytest.fixture
def fill_disk(monkeypatch):
    """Call it to make every later fsync fail as on a full disk (ENOSPC): an atomic write must then leave the file it
    would have replaced, and say which file it could not write."""
    def broken_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    return lambda: monkeypatch.setattr("os.fsync", broken_fsync)


def abandoned_write(path, host: str | None = None, pid: int | None = None):
    """The temporary file that a write of ``path`` leaves when its process is killed outright; by default that of
    one of this host's processes that has exited."""
    import socket
    import subprocess

    if pid is None:
        gone = subprocess.Popen(["true"])
        gone.wait()
        pid = gone.pid
    host = host or socket.gethostname().replace(".", "_")
    tmp = path.parent / f".{path.name}.{host}-{pid}-0123456789ab.tmp"
    tmp.write_bytes(b"half of a file")
    return tmp
