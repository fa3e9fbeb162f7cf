"""What the parity term changes on models that compute parity (an even p): per model, the verdict, L3's parity votes
P (a + b even, odd), L2's and L3's worst margin and accuracy (with harmonics), and every bound tier's certified
percentage and largest B/truth, one line each.

    python benchmarks/parity_term.py MODEL.safetensors ...

Run it under an older quadlens (``PYTHONPATH=<worktree>/src``) for the figures before; results in
``benchmarks/results/parity_term_even_p.txt`` and docs/study.md (Even moduli).
"""

import sys
import warnings

from quadlens import load_model
from quadlens.certify import bound
from quadlens.explain import explain


def measure(path: str) -> dict:
    model = load_model(path)
    explanation = explain(model)
    parity = getattr(explanation, "parity", None)  # None before the parity term, and for a model that does not fit
    row = {"verdict": explanation.verdict,
           "P": None if parity is None else [round(float(x), 2) for x in parity.by_sum()]}
    if explanation.fits_picture:
        for name in ("L2", "L3"):
            level = explanation.level(name, True)
            row[name] = (round(level.min_margin, 2), round(100 * level.accuracy, 2))
    report = bound(model)
    row["tiers"] = {t.name: (round(100 * float(t.certified.mean()), 1), round(float((t.bound / report.truth).max()), 2))
                    for t in report.tiers}
    row["truth_max"] = round(float(report.truth.max()), 2)
    row["viol"] = sum(report.violations(t) for t in report.tiers)
    return row


if __name__ == "__main__":
    warnings.filterwarnings("ignore", message="p=.* is not prime")
    for path in sys.argv[1:]:
        print(path, measure(path), flush=True)
