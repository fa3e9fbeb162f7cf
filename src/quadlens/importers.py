"""Models from other code into quadlens's format, and back to TransformerLens.

Formats:
  transformer-lens  a one-layer ``HookedTransformer`` state dict (or live model) with n_ctx = 2, no LayerNorm;
                    its softmax attention becomes ``attention_rate = 0``, or constant attention when W_Q or
                    W_K is zero (then softmax is exactly uniform).
  grokking          the layout common in public modular-arithmetic work: ``embed.W_E [d, p]``,
                    ``pos_embed.W_pos [n_ctx, d]``, ``unembed.W_U [d, p]``, ``blocks.0.attn.W_{Q,K,V} [h, d_head, d]``,
                    ``blocks.0.attn.W_O [d, h·d_head]``, ``blocks.0.mlp.W_in [m, d]``, ``b_in``, ``W_out [d, m]``,
                    ``b_out``, with a JSON config (``C`` = p, ``n_heads``, ``d_model``, ``n_layers``, ``act_fn``,
                    ``attn_coeff`` κ: A = κ·softmax + (1 − κ), so κ = 0 gives weights (1, 1)).

Files are safetensors or torch ``.pt`` state dicts, loaded with ``weights_only=True`` onto the CPU whatever
device saved them; anything else is refused. Every key and shape is checked against the config.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import torch
from torch import Tensor

from .checks import is_real_number
from .files import read_json
from .model import ModelConfig, Transformer

FORMATS = ("transformer-lens", "grokking")
TL_ZERO_BIASES = ("blocks.0.attn.b_Q", "blocks.0.attn.b_K", "blocks.0.attn.b_V", "blocks.0.attn.b_O", "unembed.b_U")
TL_BUFFERS = ("blocks.0.attn.mask", "blocks.0.attn.IGNORE")
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")  # where training checkpoints keep the weights


class ImportFormatError(ValueError):
    """A foreign checkpoint that cannot be imported, with the file, key and shape at fault."""


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors from a safetensors file or a ``.pt`` state dict (``weights_only``, mapped to the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as e:
            raise ImportFormatError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise ImportFormatError(f"{path}: not a plain tensor state dict (refused, nothing was unpickled beyond "
                                f"tensors): {_load_failure(e)}") from e
    if isinstance(state, dict) and not _tensors(state):  # a training checkpoint: the weights under one key
        state = next((state[key] for key in NESTED_STATE_KEYS if _tensors(state.get(key))), state)
    if not _tensors(state):
        found = f"a dict with keys {sorted(map(str, state))[:12]}" if isinstance(state, dict) else type(state).__name__
        raise ImportFormatError(f"{path}: expected a dict of tensors, or one under {list(NESTED_STATE_KEYS)}; "
                                f"found {found}")
    return {k: v.detach().to("cpu") for k, v in state.items()}


def _tensors(value) -> bool:
    """Whether ``value`` is a state dict: a dict of tensors."""
    return isinstance(value, dict) and all(isinstance(v, Tensor) for v in value.values())


def _load_failure(error: Exception) -> str:
    """What torch.load objected to, without its advice to load the file unsafely (which quadlens never does)."""
    text = str(error)
    reason = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
    return next((line.strip() for line in reason.splitlines() if line.strip()), type(error).__name__)


def _take(state: dict[str, Tensor], key: str, shape: tuple[int, ...], source: str) -> Tensor:
    """The tensor at ``key``, checked: present, of ``shape``, real and finite."""
    if key not in state:
        raise ImportFormatError(f"{source}: missing key '{key}'")
    tensor = state[key]
    if tuple(tensor.shape) != shape:
        raise ImportFormatError(f"{source}: key '{key}' has shape {tuple(tensor.shape)}, the config needs {shape}")
    if tensor.is_complex() or not tensor.isfinite().all():
        raise ImportFormatError(f"{source}: key '{key}' holds {'complex' if tensor.is_complex() else 'non-finite'} "
                                f"values")
    return tensor


def _size(state: dict[str, Tensor], key: str, axis: int, ndim: int, source: str) -> int:
    """A size the config does not give, read from the tensor at ``key`` (``ndim`` dimensions) along ``axis``."""
    if key not in state:
        raise ImportFormatError(f"{source}: missing key '{key}'")
    shape = tuple(state[key].shape)
    if len(shape) != ndim or shape[axis] < 1:
        raise ImportFormatError(f"{source}: key '{key}' has shape {shape}; expected {ndim} dimensions, none empty")
    return shape[axis]


def _setting(config: dict, key: str, source: str, whole: bool = True, default: float | None = None) -> float:
    """The config's number at ``key`` (a whole one unless ``whole`` is False; ``default`` where it is absent), or an
    error that names the key and the value found."""
    if key not in config:
        if default is None:
            raise ImportFormatError(f"{source}: config has no '{key}'")
        return default
    value = config[key]
    number = is_real_number(value) and math.isfinite(value)
    if not number or (whole and (value != int(value) or value < 1)):
        raise ImportFormatError(f"{source}: config {key}={value!r} is not "
                                f"{'a whole number at least 1' if whole else 'a finite number'}")
    return int(value) if whole else float(value)


def _refuse_extra(state: dict[str, Tensor], known: set[str], source: str) -> None:
    extra = sorted(set(state) - known)
    if extra:
        raise ImportFormatError(f"{source}: unexpected keys {extra} (LayerNorm, more layers or another layout?)")


def from_grokking(state: dict[str, Tensor], config: dict, source: str = "checkpoint") -> Transformer:
    """A grokking-style state dict and its config, as a quadlens model with identical logits."""
    p, h, d = (_setting(config, key, source) for key in ("C", "n_heads", "d_model"))
    if _setting(config, "n_layers", source) != 1:
        raise ImportFormatError(f"{source}: config n_layers={config['n_layers']}; quadlens models have one layer")
    if "act_fn" not in config:
        raise ImportFormatError(f"{source}: config has no 'act_fn'")
    acts = {"relu": "relu", "gelu": "gelu"}
    act = acts.get(str(config["act_fn"]).lower())
    if act is None:
        raise ImportFormatError(f"{source}: config act_fn={config['act_fn']!r}, expected 'ReLU' or 'GeLU'")
    kappa = _setting(config, "attn_coeff", source, whole=False)
    if not 0.0 <= kappa <= 1.0:
        raise ImportFormatError(f"{source}: config attn_coeff={kappa} lies outside [0, 1]")
    d_head = _size(state, "blocks.0.attn.W_Q", 1, 3, source)
    m = _size(state, "blocks.0.mlp.b_in", 0, 1, source)
    n_ctx = _size(state, "pos_embed.W_pos", 0, 2, source)
    if n_ctx < 2:
        raise ImportFormatError(f"{source}: key 'pos_embed.W_pos' has {n_ctx} positions; inputs need 2")
    get = lambda key, shape: _take(state, key, shape, source).double()  # noqa: E731
    params = {
        "W_E": get("embed.W_E", (d, p)).T,
        "W_pos": get("pos_embed.W_pos", (n_ctx, d))[:2],
        "W_Q": get("blocks.0.attn.W_Q", (h, d_head, d)).transpose(1, 2),
        "W_K": get("blocks.0.attn.W_K", (h, d_head, d)).transpose(1, 2),
        "W_V": get("blocks.0.attn.W_V", (h, d_head, d)).transpose(1, 2),
        "W_O": get("blocks.0.attn.W_O", (d, h * d_head)).T.reshape(h, d_head, d),
        "W_in": get("blocks.0.mlp.W_in", (m, d)).T,
        "b_in": get("blocks.0.mlp.b_in", (m,)),
        "W_out": get("blocks.0.mlp.W_out", (d, m)).T,
        "b_out": get("blocks.0.mlp.b_out", (d,)),
        "W_U": get("unembed.W_U", (d, p)),
    }
    _refuse_extra(state, {"embed.W_E", "pos_embed.W_pos", "unembed.W_U", "blocks.0.attn.W_Q", "blocks.0.attn.W_K",
                          "blocks.0.attn.W_V", "blocks.0.attn.W_O", "blocks.0.mlp.W_in", "blocks.0.mlp.b_in",
                          "blocks.0.mlp.W_out", "blocks.0.mlp.b_out", "blocks.0.attn.mask"}, source)
    cfg = ModelConfig(p=p, d_model=d, n_heads=h, d_head=d_head, d_mlp=m, act_fn=act,
                      attention_rate=1.0 - kappa, constant_attention=(1.0, 1.0))
    return Transformer(cfg, {k: v.contiguous() for k, v in params.items()})


def from_transformer_lens(state: dict[str, Tensor], config: dict, source: str = "checkpoint") -> Transformer:
    """A one-layer HookedTransformer state dict and its config (``HookedTransformerConfig`` fields)."""
    if _setting(config, "n_layers", source, default=1) != 1:
        raise ImportFormatError(f"{source}: config n_layers={config['n_layers']}; quadlens models have one layer")
    if config.get("normalization_type") not in (None, "None"):
        raise ImportFormatError(f"{source}: config normalization_type={config['normalization_type']!r}; "
                           f"quadlens models have no LayerNorm")
    if config.get("attn_only"):
        raise ImportFormatError(f"{source}: config attn_only=True; quadlens models have an MLP")
    act = {"relu": "relu", "gelu": "gelu"}.get(str(config.get("act_fn", "relu")).lower())
    if act is None:
        raise ImportFormatError(f"{source}: config act_fn={config.get('act_fn')!r}; quadlens supports relu and gelu")
    d, h, d_head, m = (_setting(config, key, source) for key in ("d_model", "n_heads", "d_head", "d_mlp"))
    if "d_vocab_out" not in config and "d_vocab" not in config:
        raise ImportFormatError(f"{source}: config has neither 'd_vocab_out' nor 'd_vocab' (p, the number of tokens)")
    p = _setting(config, "d_vocab_out" if "d_vocab_out" in config else "d_vocab", source)
    if _setting(config, "d_vocab", source, default=p) != p:
        raise ImportFormatError(f"{source}: d_vocab={config['d_vocab']} differs from d_vocab_out={p}; "
                           f"quadlens needs tokens 0..p-1 in and out")
    if _setting(config, "n_ctx", source, default=2) != 2:
        raise ImportFormatError(f"{source}: config n_ctx={config['n_ctx']}; quadlens reads (a, b) at positions 0, 1")
    get = lambda key, shape: _take(state, key, shape, source).double()  # noqa: E731
    params = {
        "W_E": get("embed.W_E", (p, d)), "W_pos": get("pos_embed.W_pos", (2, d)),
        "W_Q": get("blocks.0.attn.W_Q", (h, d, d_head)), "W_K": get("blocks.0.attn.W_K", (h, d, d_head)),
        "W_V": get("blocks.0.attn.W_V", (h, d, d_head)), "W_O": get("blocks.0.attn.W_O", (h, d_head, d)),
        "W_in": get("blocks.0.mlp.W_in", (d, m)), "b_in": get("blocks.0.mlp.b_in", (m,)),
        "W_out": get("blocks.0.mlp.W_out", (m, d)), "b_out": get("blocks.0.mlp.b_out", (d,)),
        "W_U": get("unembed.W_U", (d, p)),
    }
    for key in TL_ZERO_BIASES:
        if key in state and bool((state[key] != 0).any()):
            raise ImportFormatError(f"{source}: key '{key}' is non-zero; quadlens holds attention and unembedding "
                               f"biases at zero, so this model cannot be imported exactly")
    tl_keys = {"embed.W_E", "pos_embed.W_pos", "unembed.W_U", *TL_ZERO_BIASES, *TL_BUFFERS,
               *(f"blocks.0.attn.W_{x}" for x in "QKVO"), *(f"blocks.0.mlp.{x}" for x in ("W_in", "b_in", "W_out", "b_out"))}
    _refuse_extra(state, tl_keys, source)
    uniform = bool((params["W_Q"] == 0).all() or (params["W_K"] == 0).all())
    cfg = ModelConfig(p=p, d_model=d, n_heads=h, d_head=d_head, d_mlp=m, act_fn=act,
                      attention_rate=1.0 if uniform else 0.0)
    return Transformer(cfg, params)


def import_model(src: str | Path, fmt: str, config: str | Path | dict | None = None) -> Transformer:
    """Import a foreign checkpoint file (with its JSON config) as a float64 quadlens model."""
    if fmt not in FORMATS:
        raise ImportFormatError(f"format must be one of {FORMATS}, got {fmt!r}")
    state = load_state_dict(src)
    if config is None:
        raise ImportFormatError(f"{src}: the {fmt} format needs its config (--config FILE.json)")
    if not isinstance(config, dict):
        try:
            config = read_json(Path(config))
        except ValueError as e:
            raise ImportFormatError(f"{e}: the config must be a JSON object of settings") from e
    convert = from_grokking if fmt == "grokking" else from_transformer_lens
    return convert(state, config, str(src))


def from_hooked_transformer(model) -> Transformer:
    """A live ``transformer_lens.HookedTransformer`` (needs the ``transformer-lens`` extra)."""
    cfg = model.cfg
    config = {k: getattr(cfg, k) for k in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab",
                                           "d_vocab_out", "n_ctx", "act_fn", "normalization_type", "attn_only")}
    return from_transformer_lens(dict(model.state_dict()), config, "HookedTransformer")


def to_transformer_lens(model: Transformer) -> tuple[dict[str, Tensor], dict]:
    """State dict and ``HookedTransformerConfig`` fields of an equivalent one-layer HookedTransformer.

    Constant attention is written as W_Q = W_K = 0 (softmax then gives exactly (1/2, 1/2)); the (1, 1)
    convention doubles W_V. Interpolated attention (0 < ρ < 1) has no TransformerLens equivalent.
    """
    cfg = model.cfg
    P = {k: v.detach().clone() for k, v in model.params().items()}
    if cfg.attention_kind == "interpolated":
        raise ValueError(f"attention_rate={cfg.attention_rate} has no TransformerLens equivalent")
    if cfg.attention_kind == "constant":
        alpha0, alpha1 = cfg.constant_attention
        if alpha0 != alpha1:
            raise ValueError(f"constant attention {cfg.constant_attention} is not uniform; no TransformerLens equivalent")
        P["W_Q"], P["W_K"] = torch.zeros_like(P["W_Q"]), torch.zeros_like(P["W_K"])
        P["W_V"] = P["W_V"] * (2 * alpha0)
    h, d_head, d, p = cfg.n_heads, cfg.d_head, cfg.d_model, cfg.p
    state = {"embed.W_E": P["W_E"], "pos_embed.W_pos": P["W_pos"], "unembed.W_U": P["W_U"],
             "unembed.b_U": torch.zeros(p, dtype=P["W_U"].dtype),
             **{f"blocks.0.attn.W_{x}": P[f"W_{x}"] for x in "QKVO"},
             "blocks.0.attn.b_Q": torch.zeros(h, d_head, dtype=P["W_Q"].dtype),
             "blocks.0.attn.b_K": torch.zeros(h, d_head, dtype=P["W_Q"].dtype),
             "blocks.0.attn.b_V": torch.zeros(h, d_head, dtype=P["W_Q"].dtype),
             "blocks.0.attn.b_O": torch.zeros(d, dtype=P["W_Q"].dtype),
             **{f"blocks.0.mlp.{x}": P[x] for x in ("W_in", "b_in", "W_out", "b_out")}}
    config = {"n_layers": 1, "d_model": d, "n_heads": h, "d_head": d_head, "d_mlp": cfg.d_mlp, "d_vocab": p,
              "d_vocab_out": p, "n_ctx": 2, "act_fn": cfg.act_fn, "normalization_type": None, "attn_only": False}
    return state, config
