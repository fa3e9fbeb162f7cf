"""Atomic file writes and strict JSON (non-finite floats become null), shared by every writer; JSON read back with
an error that names the file. A write's temporary file is named by its host and process, so that what a killed
write left can be told from a live one's and removed."""

from __future__ import annotations

import glob
import json
import math
import os
import secrets
import socket
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part. The temporary
    files that earlier writes of ``path`` left when their process was killed are removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_writes(path)
    tmp = path.parent / f".{path.name}.{_host()}-{os.getpid()}-{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno is not None:  # a full disk, say: named by the file meant
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def remove_abandoned_writes(path: Path) -> list[Path]:
    """Remove the temporary files of writes of ``path`` whose process is gone (killed by a signal that no clean-up
    outlives: SIGKILL, the out-of-memory killer, a lost machine); those removed."""
    removed = abandoned_writes(path.parent, path.name)
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


def abandoned_writes(folder: Path, name: str | None = None) -> list[Path]:
    """The temporary files in ``folder`` (of writes of the file ``name``, or of any) whose process is gone. A
    process is known to be gone only on this host: the files of another host's writers (a folder shared over the
    network) are not counted."""
    found = []
    for tmp in sorted(Path(folder).glob(f".{glob.escape(name)}.*.tmp" if name else ".*.tmp")):
        writer = tmp.name[:-len(".tmp")].rsplit(".", 1)[-1].rsplit("-", 2)  # HOST, PID, token
        if len(writer) == 3 and writer[0] == _host() and writer[1].isdigit() and not _alive(int(writer[1])):
            found.append(tmp)
    return found


def _host() -> str:
    return socket.gethostname().replace(".", "_")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists."""
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def json_ready(value):
    """Plain JSON types: numpy scalars and arrays converted, NaN and ±inf as None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path: Path, data: dict) -> None:
    text = json.dumps(json_ready(data), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: Path) -> dict:
    """The JSON object in ``path``, or a ValueError that names the file and what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not readable JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return data
