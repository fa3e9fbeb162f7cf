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
    path.write_text(_layout(runs))


def _layout(runs: list[dict]) -> str:
    """``{"runs": [...]}``, each run's fields on a line of their own and each record of a list of records (a model,
    a tier's measurement) on one line: one model per line to read or grep, and a quarter smaller than indenting every
    field."""
    def field(key: str, value) -> str:
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            records = ",\n    ".join(json.dumps(item) for item in value)
            return f"   {json.dumps(key)}: [\n    {records}\n   ]"
        return f"   {json.dumps(key)}: {json.dumps(value)}"
    body = ",\n".join("  {\n" + ",\n".join(field(key, value) for key, value in run.items()) + "\n  }" for run in runs)
    return '{\n "runs": [\n' + body + "\n ]\n}\n"
