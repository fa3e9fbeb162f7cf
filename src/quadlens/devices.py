"""Which torch device a computation runs on: 'auto' (a GPU where there is one), or one this machine has."""

from __future__ import annotations

import torch


def resolve_device(device: str | None = "auto") -> torch.device:
    """The device ``device`` names ('auto' or None: CUDA when present, else the CPU), or a ValueError that says why
    this machine cannot run on it."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: quadlens runs on cpu or cuda")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this machine has no CUDA device (torch {torch.__version__})")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved
