"""Numbers as people read them in tables, logs and reprs."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percent(fraction: float, decimals: int = 1) -> str:
    """``fraction`` as a percentage, e.g. ``'94.5 %'``. A fraction short of 1 never reads as 100 % and a positive
    one never as 0 %: more decimals are shown until it does not (up to three more), then a bound."""
    value = 100 * float(fraction)
    for places in range(decimals, decimals + 4):
        text = f"{value:.{places}f}"
        if (fraction >= 1 or float(text) < 100) and (fraction <= 0 or float(text) > 0):
            return f"{text} %"
    return f"> {100 - 10 ** -places:.{places}f} %" if fraction > 0.5 else f"< {10 ** -places:.{places}f} %"


def figure(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant figures, with more (up to 8) where fewer would round a value that is not
    whole to a whole number: a resultant of 0.99996 does not read as 1."""
    text = f"{value:.{digits}g}"
    if not math.isfinite(value) or value == round(value):
        return text
    for places in range(digits + 1, 9):
        if float(text) != round(value):
            break
        text = f"{value:.{places}g}"
    return text


def named_figure(name: str, value: float | None, digits: int = 4) -> str:
    """A figure named ``name`` (a study column, a summary statistic, a training metric): a share of inputs (an
    accuracy or a certified fraction) as a ``percent``, any other to ``digits`` significant figures (``figure``);
    ``-`` for None (not known, or not finite: JSON keeps NaN as null)."""
    if value is None:
        return "-"
    is_share = name.endswith("accuracy") or name.endswith("_fraction")
    return percent(value) if is_share else figure(value, digits)


def duration(seconds: float) -> str:
    """A time span to the precision a person waiting needs: ``'40 s'``, ``'7 min'``, ``'2 h 05 min'``."""
    seconds = max(float(seconds), 0.0)
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def count(n: int, noun: str) -> str:
    """``'1 model'``, ``'3 models'``: a number and its noun, plural where it is not one."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def seed_ranges(seeds: Iterable[int]) -> str:
    """``'0-3,7,9-10'``: seeds as runs of consecutive numbers, in the form ``--seeds`` takes."""
    runs: list[list[int]] = []
    for seed in sorted(set(seeds)):
        if runs and seed == runs[-1][1] + 1:
            runs[-1][1] = seed
        else:
            runs.append([seed, seed])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)
