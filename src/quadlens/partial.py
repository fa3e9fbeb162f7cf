"""Partial results of a long run, kept on disk as it goes, so that an interrupted run resumes where it stopped.

``quadlens bound`` at large p is the case: brute force takes hours on a CPU, the quadratic tiers minutes. Each
stage's arrays are saved under its name, stamped with a fingerprint of everything the results depend on (the
model's tables, the explanation, the quadlens version); a stage saved for other inputs is never read back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np

from .files import atomic_write_bytes

FINGERPRINT = "_fingerprint"  # the key under which each stage file holds the fingerprint it was saved for


def fingerprint(*parts) -> str:
    """A digest of arrays, numbers, strings and dataclasses of them (by their fields), in order."""
    digest = hashlib.sha256()

    def feed(value) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            digest.update(type(value).__name__.encode())
            for field in dataclasses.fields(value):
                feed(getattr(value, field.name))
        elif isinstance(value, (list, tuple)):
            digest.update(f"[{len(value)}".encode())
            for item in value:
                feed(item)
        elif isinstance(value, np.ndarray):
            array = np.ascontiguousarray(value)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.data)  # hashed in place, not copied
        else:
            digest.update(repr(value).encode())

    for part in parts:
        feed(part)
    return digest.hexdigest()


class Partial:
    """A folder of named stages' arrays for one run, all stamped with the run's ``fingerprint``."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder, self.fingerprint = Path(folder), fingerprint

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.npz"

    def load(self, name: str) -> dict[str, np.ndarray] | None:
        """The arrays saved under ``name`` for this run, or None: not saved, saved for other inputs, or unreadable
        (every save is atomic, so only a file damaged by other means is; the stage then runs again)."""
        try:
            with np.load(self._path(name), allow_pickle=False) as saved:
                arrays = {key: saved[key] for key in saved.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if str(arrays.pop(FINGERPRINT, "")) != self.fingerprint:
            return None
        return arrays

    def save(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Save the arrays under ``name``, atomically: a later run reads the old file or the whole new one."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, **{FINGERPRINT: np.array(self.fingerprint)})
        atomic_write_bytes(self._path(name), buffer.getvalue())


def discard(folder: Path) -> None:
    """Remove a run's partial results, once its results are written."""
    shutil.rmtree(folder, ignore_errors=True)
