"""Checkpoints: one safetensors file per model, its JSON metadata in the header and beside it as ``.json``.

The metadata inside the safetensors header is authoritative; the ``.json`` sidecar is a copy for scripts.
Writes are atomic (temporary file, fsync, rename), so an interrupted write never replaces a good file.
Loading validates names, shapes, dtypes and finiteness against the stored config. Nothing is unpickled.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from . import __version__
from .checks import is_real_number, is_whole_number
from .files import atomic_write_bytes, atomic_write_json, json_ready
from .model import ModelConfig, Transformer

FORMAT = "quadlens.checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "quadlens"
BUNDLED_MODEL = "pizza_p59_seed0.safetensors"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the file and the reason."""


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict) -> None:
    """Atomically write a safetensors file whose header carries ``metadata`` as JSON."""
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    atomic_write_bytes(path, safetensors_bytes(cpu, metadata={METADATA_KEY: json.dumps(json_ready(metadata))}))


def load_tensors(path: Path) -> tuple[dict[str, Tensor], dict]:
    """Read a safetensors file written by :func:`save_tensors`: its tensors and its metadata."""
    return _read(path, tensors=True)


def load_metadata(path: Path) -> dict:
    """The metadata of a file written by :func:`save_tensors`, from its header alone (no tensor is read)."""
    return _read(path, tensors=False)[1]


def _read(path: Path, tensors: bool) -> tuple[dict[str, Tensor], dict]:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a checkpoint file (seed_NNNN.safetensors)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            found = {name: f.get_tensor(name) for name in f.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from e
    if METADATA_KEY not in header:
        raise CheckpointError(f"{path}: safetensors header has no '{METADATA_KEY}' metadata; not a quadlens file "
                              f"(a TransformerLens or grokking-style checkpoint converts with 'quadlens import')")
    try:
        metadata = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: metadata '{METADATA_KEY}' is not valid JSON: {e}") from e
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: metadata '{METADATA_KEY}' is a JSON {type(metadata).__name__}, not an object")
    return found, metadata


def model_metadata(cfg: ModelConfig, dtype: torch.dtype = torch.float32, **fields) -> dict:
    """Metadata common to every model checkpoint; ``fields`` adds run details (seed, metrics, ...)."""
    dtype_name = next(name for name, dt in DTYPES.items() if dt == dtype)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "quadlens_version": __version__,
            "model_config": cfg.to_dict(), "dtype": dtype_name, **fields}


def save_model(path: Path, cfg: ModelConfig, params: dict[str, Tensor], **fields) -> None:
    """Save one model (TransformerLens-shaped ``params``) as ``path`` (.safetensors) and its ``.json`` sidecar."""
    path = Path(path)
    dtype = next(iter(params.values())).dtype
    metadata = model_metadata(cfg, dtype, **fields)
    validate_params(path, cfg, params, dtype)
    save_tensors(path, params, metadata)
    atomic_write_json(path.with_suffix(".json"), metadata)


def validate_params(path: Path, cfg: ModelConfig, params: dict[str, Tensor], dtype: torch.dtype) -> None:
    """Refuse parameters that do not match the config: missing, extra, mis-shaped, wrong dtype, non-finite."""
    expected = cfg.param_shapes()
    missing, extra = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: tensor names do not match the config (missing {missing}, unexpected {extra})")
    for name, shape in expected.items():
        t = params[name]
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{path}: tensor '{name}' has shape {tuple(t.shape)}, config needs {shape}")
        if t.dtype != dtype:
            raise CheckpointError(f"{path}: tensor '{name}' has dtype {t.dtype}, metadata says {dtype}")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: tensor '{name}' holds non-finite values")


def validate_run_details(path: Path, metadata: dict) -> None:
    """Refuse run details that tables and studies could not use: a seed or epoch count that is not a whole number
    of at least 0, metrics that are not numbers by name."""
    for key in ("seed", "epochs_trained"):
        value = metadata.get(key)
        if value is not None and (not is_whole_number(value) or value < 0):
            raise CheckpointError(f"{path}: metadata '{key}' is {value!r}, not a whole number at least 0")
    metrics = metadata.get("metrics")
    if metrics is None:
        return
    if not isinstance(metrics, dict):
        raise CheckpointError(f"{path}: metadata 'metrics' is a JSON {type(metrics).__name__}, not an object")
    for name, value in metrics.items():
        if value is not None and not is_real_number(value):
            raise CheckpointError(f"{path}: metadata 'metrics' has {name}={value!r}, not a number")


def load_model(path: str | Path | None = None) -> Transformer:
    """Load a checkpoint (default: the bundled pizza model); ``model.metadata`` holds its metadata."""
    path = bundled_model_path() if path is None else Path(path)
    tensors, metadata = load_tensors(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: metadata 'format' is {metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {metadata.get('format_version')!r} is not supported "
                              f"(this quadlens reads {FORMAT_VERSION})")
    try:
        cfg = ModelConfig.from_dict(metadata["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid 'model_config' in metadata: {e}") from e
    if not isinstance(metadata.get("dtype"), str) or metadata["dtype"] not in DTYPES:
        raise CheckpointError(f"{path}: metadata 'dtype' is {metadata.get('dtype')!r}, expected one of {list(DTYPES)}")
    validate_params(path, cfg, tensors, DTYPES[metadata["dtype"]])
    validate_run_details(path, metadata)
    model = Transformer(cfg, tensors)
    model.metadata = metadata
    return model


def bundled_model_path() -> Path:
    """Path of the trained paper-configuration pizza model shipped with quadlens."""
    return Path(str(resources.files("quadlens") / "data" / BUNDLED_MODEL))
