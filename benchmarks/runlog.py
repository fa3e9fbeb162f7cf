"""A results file that keeps every run: ``{"runs": [...]}``, each run with its date, machine, ``bound.json`` schema
version and command, so that runs before and after a change to the bounds sit side by side."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch

from quadlens.certify import SCHEMA_VERSION


def append_run(path: Path, **results) -> None:
    """Add this run's ``results`` to the runs logged in ``path`` (created if absent)."""
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
               "torch": torch.__version__}
    runs.append({"date": datetime.date.today().isoformat(), "machine": machine, "schema_version": SCHEMA_VERSION,
                 "command": " ".join(["python", *sys.argv]), **results})
    path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
