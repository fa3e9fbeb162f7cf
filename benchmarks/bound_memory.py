"""Peak resident memory of each bound tier on the synthetic pizzas of ``bound_scaling.py`` (docs/bounds.md §9).

    python benchmarks/bound_memory.py [--ps 457 911] [--tiers arcs arcs_grouped] [--json results/bound_memory.json]

Each tier at each p runs in a process of its own (what earlier tiers freed would otherwise blur the figures): the
model's tables are built and the compiled kernels loaded, the process's peak-memory mark is reset (Linux:
``/proc/self/clear_refs``), and what is reported is the tier's peak resident memory above the resident memory
just before it, with its wall time. Linux only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bound_scaling import synthetic
from runlog import append_run

from quadlens.certify import TIERS, check_tiers, load_compiled_kernels, run_tier
from quadlens.clusters import build_clusters
from quadlens.neurons import fit_neurons

STATUS = Path("/proc/self/status")


def _status_mib(key: str) -> float:
    """A memory figure of this process's /proc status (VmRSS now, VmHWM its peak since the last reset), in MiB."""
    line = next(line for line in STATUS.read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024  # given in kB (KiB)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak resident set size (VmHWM) to the current one


def measure_one(p: int, name: str) -> dict:
    """One tier's peak resident memory above the resident memory before it, and its wall time, at one p."""
    tables = synthetic(p)
    clusters = build_clusters(fit_neurons(tables), tables.b_in)
    load_compiled_kernels()
    _reset_peak()
    before = _status_mib("VmRSS")
    start = time.perf_counter()
    tier = run_tier(name, tables, clusters)
    seconds = time.perf_counter() - start
    return {"name": name, "d_mlp": tables.d_mlp, "peak_mib": _status_mib("VmHWM") - before, "seconds": seconds,
            "certified_fraction": float(tier.certified.mean()), "ops": tier.ops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ps", type=int, nargs="*", default=[457, 911])
    parser.add_argument("--tiers", nargs="*", default=[name for name in TIERS if not name.startswith("quadratic")])
    parser.add_argument("--json", type=Path, help="append this run's results to this file")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # the child process: p and one tier
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(int(args.one[0]), args.one[1])))
        return
    if not STATUS.exists():
        sys.exit("bound_memory.py reads /proc/self/status: it runs on Linux only")
    rows = []
    for p in args.ps:
        tiers = [json.loads(subprocess.run([sys.executable, __file__, "--one", str(p), name], capture_output=True,
                                           text=True, check=True).stdout.strip().splitlines()[-1])
                 for name in check_tiers(args.tiers)]
        rows.append({"p": p, "d_mlp": tiers[0]["d_mlp"], "tiers": tiers})
        print(f"p={p} d_mlp={rows[-1]['d_mlp']}: " + ", ".join(
            f"{t['name']} {t['peak_mib']:.0f} MiB ({t['seconds']:.2f} s)" for t in tiers), flush=True)
    if args.json:
        append_run(args.json, rows=rows)


if __name__ == "__main__":
    main()
