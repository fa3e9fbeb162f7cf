"""Two versions of the compiled arc kernel, timed interleaved on the same inputs (BENCHMARKS.md's kernel figures).

    git show HEAD~1:src/quadlens/arcs.py > /tmp/arcs_old.py
    python benchmarks/arc_kernel_ab.py /tmp/arcs_old.py src/quadlens/arcs.py --p 457 [--groups 4]

Both files must take the same arguments (``arcs.arc_sums``'s signature); each is compiled from a copy,
outside numba's cache. Inputs are the first cluster (or waveform group) of the synthetic pizza of
``bound_scaling.py``; each version runs ``--runs`` times, in turn with the other, so that this machine's
drift hits both alike; the minimum after the first (compiling) run is reported, with the largest
difference between their sums and their operation counts.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np

from bound_scaling import synthetic
from quadlens import arcs
from quadlens.bounds import BAND_ITERATIONS, sign_pattern_arguments
from quadlens.clusters import build_clusters
from quadlens.decomposition import decompose
from quadlens.neurons import fit_neurons
from quadlens.ops import Ops


def load(path: str, name: str, folder: Path):
    """The kernel module at ``path`` as module ``name``, compiled afresh: a copy without numba's on-disk cache,
    so that neither version reads, or writes into, the installed package's cache."""
    copy = folder / f"{name}.py"
    copy.write_text(Path(path).read_text().replace("cache=True", "cache=False"))
    spec = importlib.util.spec_from_file_location(name, copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kernel_inputs(p: int, groups: int) -> tuple:
    """arc_sums's arguments for the first cluster group, and (W, p, n)."""
    tables = synthetic(p)
    term = decompose(tables, build_clusters(fit_neurons(tables), tables.b_in), Ops(), waveform_groups=groups).clusters[0]
    return sign_pattern_arguments(term, p, arcs.Workspace()), (term.output_weights.shape[1], p, len(term.r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--p", type=int, default=457)
    parser.add_argument("--groups", type=int, default=1, help="waveform groups per cluster (4: arcs_grouped's)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    versions = {label: load(path, f"arcs_{label}", folder) for label, path in (("old", args.old), ("new", args.new))}
    inputs, (W, p, n) = kernel_inputs(args.p, args.groups)
    seconds, results = {label: [] for label in versions}, {}
    for _ in range(args.runs):
        for label, module in versions.items():
            found, band = np.zeros((W, p, p)), np.zeros((p, p))
            start = time.perf_counter()
            ops = module.arc_sums(*inputs, BAND_ITERATIONS, found, band)
            seconds[label].append(time.perf_counter() - start)
            results[label] = (found, band, int(ops.sum()))
    (f0, b0, o0), (f1, b1, o1) = results["old"], results["new"]
    print(f"p={p} n={n} W={W}: old {min(seconds['old'][1:]):.4f} s, new {min(seconds['new'][1:]):.4f} s; "
          f"max |Δ sums| {np.abs(f0 - f1).max():.1e}, max |Δ band| {np.abs(b0 - b1).max():.1e}; ops {o0} vs {o1}")


if __name__ == "__main__":
    main()
