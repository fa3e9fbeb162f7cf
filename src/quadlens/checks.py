"""What counts as a number in settings, seeds and metadata, decided in one place: Python and JSON both let
``True`` pass for 1, and numpy's scalars are numbers too."""

from __future__ import annotations

import numbers


def is_whole_number(value: object) -> bool:
    """An int of Python's or numpy's, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real_number(value: object) -> bool:
    """An int or float of Python's or numpy's (perhaps not finite), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
