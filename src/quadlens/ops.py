"""Counting arithmetic operations as they are performed: the cost every bound tier and brute force report."""

from __future__ import annotations


class Ops:
    """Counts arithmetic operations as they are performed (elementwise op = 1 per element, matmul = 2nkm)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, n: int | float) -> None:
        self.count += int(n)
