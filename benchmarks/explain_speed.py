"""Wall time of ``explain`` (and of the figures) on a model: the bundled p=59, d_mlp=512 pizza by default.

    python benchmarks/explain_speed.py [MODEL] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import quadlens
from quadlens.explain import explain
from quadlens.figures import write_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = quadlens.load_model(args.model)
    explain(model)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        explanation = explain(model)
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_figures(explanation, Path(tmp))
        figures = time.perf_counter() - start
    cfg = model.cfg
    print(f"p={cfg.p} d_mlp={cfg.d_mlp}: explain median {statistics.median(times):.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}, {args.repeats} runs); figures {figures:.2f} s; "
          f"verdict {explanation.verdict}")


if __name__ == "__main__":
    main()
