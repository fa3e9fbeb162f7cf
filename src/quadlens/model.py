"""A one-layer, LayerNorm-free transformer for a + b mod p, with TransformerLens parameter names.

Inputs are the tokens (a, b) at positions (0, 1); logits are read at position 1. Attention of position 1
over positions (0, 1) is ``A = ρ·α_const + (1 − ρ)·softmax(scores)``: ρ = 1 is the constant-attention
"pizza" setting (α_const = (1/2, 1/2), or (1, 1) in the unnormalised convention), ρ = 0 plain softmax.

Every function here works on *stacked* parameters: each tensor carries a leading seed axis S, so one call
evaluates S independent models. All embedding-side work is done once per token (p rows) and gathered per
input pair, never once per pair. Embedding, unembedding, positional and attention biases are held at zero
and are therefore not parameters; the MLP biases ``b_in`` and ``b_out`` are.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import is_whole_number
from .task import all_pairs, check_modulus

ACTIVATIONS = ("relu", "gelu")


def attention_kind(attention_rate: float) -> str:
    """'constant' (ρ = 1: pizza), 'learned' (ρ = 0: softmax, clock) or 'interpolated'."""
    return {1.0: "constant", 0.0: "learned"}.get(float(attention_rate), "interpolated")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. Defaults are the paper's pizza configuration (p = 59, d = 128, 4 heads, d_mlp = 512)."""

    p: int = 59
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    act_fn: str = "relu"
    attention_rate: float = 1.0
    constant_attention: tuple[float, float] = field(default=(0.5, 0.5))

    def __post_init__(self) -> None:
        check_modulus(self.p)
        object.__setattr__(self, "p", int(self.p))  # a plain int, as the checkpoints' JSON metadata needs
        for name in ("d_model", "n_heads", "d_head", "d_mlp"):
            value = getattr(self, name)
            if not is_whole_number(value) or value < 1:
                raise ValueError(f"{name} must be a whole number at least 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.act_fn not in ACTIVATIONS:
            raise ValueError(f"act_fn must be one of {ACTIVATIONS}, got {self.act_fn!r}")
        if not 0.0 <= self.attention_rate <= 1.0:
            raise ValueError(f"attention_rate must lie in [0, 1], got {self.attention_rate}")
        object.__setattr__(self, "constant_attention", tuple(float(x) for x in self.constant_attention))
        if len(self.constant_attention) != 2 or not all(map(math.isfinite, self.constant_attention)):
            raise ValueError(f"constant_attention needs two finite weights (positions 0, 1), "
                             f"got {self.constant_attention}")

    @property
    def attention_kind(self) -> str:
        """'constant' (pizza), 'learned' (softmax, clock) or 'interpolated'."""
        return attention_kind(self.attention_rate)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """TransformerLens names and shapes of every trained parameter."""
        p, d, h, k, m = self.p, self.d_model, self.n_heads, self.d_head, self.d_mlp
        return {
            "W_E": (p, d), "W_pos": (2, d),
            "W_Q": (h, d, k), "W_K": (h, d, k), "W_V": (h, d, k), "W_O": (h, k, d),
            "W_in": (d, m), "b_in": (m,), "W_out": (m, d), "b_out": (d,),
            "W_U": (d, p),
        }

    def n_params(self) -> int:
        return sum(math.prod(shape) for shape in self.param_shapes().values())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


def init_params(cfg: ModelConfig, seed: int) -> dict[str, Tensor]:
    """GPT-2-style initialisation as in TransformerLens: every W_ ~ N(0, (0.8/√d_model)²), biases zero.

    Drawn on the CPU from a generator seeded by ``seed`` in a fixed order, so a seed gives the same model
    on any device and whether it is trained alone or stacked with others.
    """
    generator = torch.Generator().manual_seed(int(seed))
    std = 0.8 / math.sqrt(cfg.d_model)
    params = {}
    for name, shape in cfg.param_shapes().items():
        if name.startswith("W_"):
            params[name] = torch.randn(shape, generator=generator) * std
        else:
            params[name] = torch.zeros(shape)
    return params


def stack_params(models: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack per-seed parameter dicts along a new leading seed axis."""
    return {name: torch.stack([m[name] for m in models]) for name in models[0]}


def unstack_params(params: dict[str, Tensor]) -> list[dict[str, Tensor]]:
    """Inverse of :func:`stack_params`."""
    n_seeds = next(iter(params.values())).shape[0]
    return [{name: t[s] for name, t in params.items()} for s in range(n_seeds)]


def _embeddings(params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Token embeddings at positions 0 and 1, ``[S, p, d]`` each."""
    W_E, W_pos = params["W_E"], params["W_pos"]
    return W_E + W_pos[:, None, 0], W_E + W_pos[:, None, 1]


def _head_outputs(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """What each head writes to the residual stream when it attends fully to ``x``: ``[S, p, h, d]``."""
    values = torch.einsum("spd,shdk->sphk", x, params["W_V"])
    return torch.einsum("sphk,shkd->sphd", values, params["W_O"])


def _rows(table: Tensor, index: Tensor) -> Tensor:
    """``table[s, index[s, n]]`` for a table ``[S, p, ...]`` and indices ``[S, N]``: ``[S, N, ...]``."""
    S, p = table.shape[:2]
    offsets = torch.arange(S, device=index.device)[:, None] * p
    flat = F.embedding(index + offsets, table.reshape(S * p, -1))
    return flat.reshape(*index.shape, *table.shape[2:])


def _pair_sums(table_a: Tensor, table_b: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``table_a[s, a[s, n]] + table_b[s, b[s, n]]`` for tables ``[S, p, k]``: ``[S, N, k]``, one fused gather."""
    S, p, k = table_a.shape
    offsets = torch.arange(S, device=a.device)[:, None] * (2 * p)
    bags = torch.stack([a + offsets, b + offsets + p], dim=-1).reshape(-1, 2)
    table = torch.cat([table_a, table_b], dim=1).reshape(S * 2 * p, k)
    return F.embedding_bag(bags, table, mode="sum").reshape(S, -1, k)


def activation(act_fn: str, pre: Tensor, inplace: bool = False) -> Tensor:
    """relu or gelu of the pre-activations; ``inplace`` lets relu overwrite them (a large table's copy saved)."""
    if act_fn == "relu":
        return torch.relu_(pre) if inplace else torch.relu(pre)
    return F.gelu(pre)


def token_tables(params: dict[str, Tensor], cfg: ModelConfig,
                 embeddings: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
    """The separable form of a constant-attention model (THEORY §1), differentiable, ``[S, ...]``.

    ``pre(a, b) = F_a[a] + F_b[b] + b_in`` and ``logits(a, b) = act(pre) W_L + D_a[a] + D_b[b]``.
    ``embeddings`` replaces the embedded tokens at positions 0 and 1 (default: W_E + W_pos).
    """
    if cfg.attention_kind != "constant":
        raise ValueError(f"separable tables need constant attention (attention_rate=1), "
                         f"this model has attention_rate={cfg.attention_rate}")
    alpha0, alpha1 = cfg.constant_attention
    x0, x1 = _embeddings(params) if embeddings is None else embeddings
    u = alpha0 * _head_outputs(params, x0).sum(2)
    v = x1 + alpha1 * _head_outputs(params, x1).sum(2)
    W_in, W_U = params["W_in"], params["W_U"]
    return {
        "F_a": u @ W_in,
        "F_b": v @ W_in,
        "b_in": params["b_in"],
        "W_L": params["W_out"] @ W_U,
        "D_a": u @ W_U,
        "D_b": v @ W_U + (params["b_out"][:, None, :] @ W_U),
    }


def _attention_weights(params: dict[str, Tensor], cfg: ModelConfig, x0: Tensor, x1: Tensor,
                       a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Per-head attention of position 1 on positions 0 and 1 for each pair, ``[S, N, h]`` each."""
    scale = 1.0 / math.sqrt(cfg.d_head)
    q1 = torch.einsum("spd,shdk->sphk", x1, params["W_Q"])
    k0 = torch.einsum("spd,shdk->sphk", x0, params["W_K"])
    k1 = torch.einsum("spd,shdk->sphk", x1, params["W_K"])
    q_b = _rows(q1, b)
    score0 = (q_b * _rows(k0, a)).sum(-1) * scale
    score1 = (q_b * _rows(k1, b)).sum(-1) * scale
    soft0 = torch.sigmoid(score0 - score1)  # softmax over two positions
    rho = cfg.attention_rate
    const0, const1 = cfg.constant_attention
    return rho * const0 + (1 - rho) * soft0, rho * const1 + (1 - rho) * (1 - soft0)


def forward(params: dict[str, Tensor], cfg: ModelConfig, a: Tensor, b: Tensor,
            embeddings: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Logits ``[S, N, p]`` for input pairs ``(a[s, n], b[s, n])`` (indices ``[S, N]`` or ``[N]``).

    ``embeddings`` (``[S, V, d]`` each) replaces the embedded tokens at positions 0 and 1, which the
    indices then address: pass one row per pair to take gradients with respect to each input's vectors.
    """
    n_seeds = params["W_E"].shape[0]
    a, b = a.expand(n_seeds, -1), b.expand(n_seeds, -1)
    if cfg.attention_kind == "constant":
        t = token_tables(params, cfg, embeddings)
        pre = _pair_sums(t["F_a"], t["F_b"] + t["b_in"][:, None, :], a, b)
        return torch.baddbmm(_pair_sums(t["D_a"], t["D_b"], a, b), activation(cfg.act_fn, pre), t["W_L"])
    x0, x1 = _embeddings(params) if embeddings is None else embeddings
    alpha0, alpha1 = _attention_weights(params, cfg, x0, x1, a, b)
    heads = alpha0[..., None] * _rows(_head_outputs(params, x0), a) + alpha1[..., None] * _rows(_head_outputs(params, x1), b)
    resid = _rows(x1, b) + heads.sum(2)
    hidden = activation(cfg.act_fn, resid @ params["W_in"] + params["b_in"][:, None, :])
    return (hidden @ params["W_out"] + resid + params["b_out"][:, None, :]) @ params["W_U"]


def cross_entropy64(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy per seed, ``[S]``, through a float64 log-softmax."""
    log_probs = logits.double().log_softmax(-1)
    return -log_probs.gather(-1, targets.expand(logits.shape[0], -1)[..., None]).squeeze(-1).mean(-1)


class Transformer(nn.Module):
    """One model as a ``torch.nn.Module`` with TransformerLens-named parameters (no seed axis)."""

    def __init__(self, cfg: ModelConfig, params: dict[str, Tensor] | None = None, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.metadata: dict = {}
        params = init_params(cfg, seed) if params is None else params
        for name, shape in cfg.param_shapes().items():
            tensor = params[name]
            if tuple(tensor.shape) != shape:
                raise ValueError(f"parameter {name} has shape {tuple(tensor.shape)}, config needs {shape}")
            self.register_parameter(name, nn.Parameter(tensor.detach().clone()))

    def extra_repr(self) -> str:
        """What a notebook shows for the model: its sizes, activation, attention and dtype, and its seed."""
        cfg, seed = self.cfg, self.metadata.get("seed")
        return (f"p={cfg.p}, d_model={cfg.d_model}, n_heads={cfg.n_heads}, d_mlp={cfg.d_mlp}, act_fn={cfg.act_fn!r}, "
                f"attention={cfg.attention_kind!r}, dtype={self.W_E.dtype}"
                + ("" if seed is None else f", seed={seed}"))

    def params(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self.cfg.param_shapes()}

    def fingerprint(self) -> str:
        """SHA-256 of the parameters' names, dtypes, shapes and values: the same string for the same weights, so that
        a result cached for one model is never taken for another's."""
        digest = hashlib.sha256()
        for name, t in self.params().items():
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def identity(self) -> dict:
        """Which model this is, for the files written about it: its seed (None where not recorded) and the SHA-256
        of its weights."""
        return {"seed": self.metadata.get("seed"), "weights_sha256": self.fingerprint()}

    def stacked(self) -> dict[str, Tensor]:
        return {name: t[None] for name, t in self.params().items()}

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Logits ``[N, p]`` for token pairs ``(a[n], b[n])``."""
        return forward(self.stacked(), self.cfg, a[None], b[None])[0]

    def all_logits(self, dtype: torch.dtype | None = None) -> Tensor:
        """Logits for every input, ``[p, p, p]`` indexed ``(a, b, c)``, optionally computed in ``dtype``."""
        p = self.cfg.p
        a, b = (t.to(self.W_E.device) for t in all_pairs(p))
        params = {name: t.to(dtype or t.dtype) for name, t in self.stacked().items()}
        return forward(params, self.cfg, a[None], b[None])[0].reshape(p, p, p)
