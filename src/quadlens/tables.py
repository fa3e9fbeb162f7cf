"""The separable tables of a constant-attention model (THEORY §1), in float64.

    pre(a, b)    = F_a[a] + F_b[b] + b_in                       (p × d_mlp tables)
    logits(a, b) = act(pre(a, b)) W_L + D_a[a] + D_b[b]         (W_L = W_out W_U, d_mlp × p)

Everything about the MLP lives in F_a, F_b and W_L; the direct path D_a + D_b is separable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .model import Transformer, activation, token_tables

Factors = tuple[np.ndarray, np.ndarray]  # W_L as coefficients [d_mlp, R] @ basis [R, p], for a W_L of low rank R


@dataclass(frozen=True)
class SeparableTables:
    """F_a, F_b ``[p, d_mlp]``, b_in ``[d_mlp]``, W_L ``[d_mlp, p]``, D_a, D_b ``[p, p]`` (float64)."""

    F_a: np.ndarray
    F_b: np.ndarray
    b_in: np.ndarray
    W_L: np.ndarray
    D_a: np.ndarray
    D_b: np.ndarray
    act_fn: str = "relu"

    @property
    def p(self) -> int:
        return self.F_a.shape[0]

    @property
    def d_mlp(self) -> int:
        return self.F_a.shape[1]

    def pre_activations(self, rows: slice = slice(None)) -> np.ndarray:
        """``pre[a, b, i]`` for every input (or the rows a in ``rows``), ``[p, p, d_mlp]``."""
        pre = self.F_a[rows, None, :] + self.F_b[None, :, :]
        pre += self.b_in
        return pre

    def mlp_logits(self, rows: slice = slice(None)) -> np.ndarray:
        """The MLP's contribution ``act(pre) W_L``, ``[p, p, p]`` indexed ``(a, b, c)`` (or for the rows a in
        ``rows``)."""
        return self._logits(direct=False, rows=rows)

    def direct_logits(self) -> np.ndarray:
        """The direct path ``D_a[a] + D_b[b]``, ``[p, p, p]``."""
        return self.D_a[:, None, :] + self.D_b[None, :, :]

    def logits(self, rows: slice = slice(None), W_L_factors: Factors | None = None) -> np.ndarray:
        """The model's logits for every input, ``[p, p, p]`` indexed ``(a, b, c)`` (or for the rows a in ``rows``).

        ``W_L_factors`` (coefficients ``[d_mlp, R]``, basis ``[R, p]``) is W_L of rank R, the same up to rounding:
        the hidden layer then goes through both in turn, at R/p of the cost (an explanation's levels, R ≤ 20).
        """
        return self._logits(direct=True, rows=rows, W_L_factors=W_L_factors)

    def _logits(self, direct: bool, rows: slice = slice(None), chunk_elements: int = 1 << 22,
                W_L_factors: Factors | None = None) -> np.ndarray:
        """``act(pre) W_L`` (plus the direct path), a few rows a at a time, so that the pre-activations
        (``[p, p, d_mlp]``: 3 GB at p = 457) are never held whole."""
        p = self.p
        first, stop, _ = rows.indices(p)
        out = np.empty((stop - first, p, p))
        for chunk in row_chunks(stop, p * self.d_mlp, chunk_elements, first):
            part = out[chunk.start - first:chunk.stop - first]
            pre = torch.from_numpy(self.pre_activations(chunk))
            hidden = activation(self.act_fn, pre, inplace=True).numpy()
            part[:] = hidden @ self.W_L if W_L_factors is None else (hidden @ W_L_factors[0]) @ W_L_factors[1]
            if direct:
                part += self.D_a[chunk, None, :] + self.D_b[None, :, :]
        return out


def row_chunks(count: int, per_row: int, chunk_elements: int, first: int = 0) -> list[slice]:
    """Slices of rows ``first`` … ``count`` − 1, each of about ``chunk_elements`` / ``per_row`` rows (at least one):
    how the ``[p, p, …]`` computations go a few rows a at a time, so that their temporaries stay small."""
    step = max(1, chunk_elements // max(per_row, 1))
    return [slice(lo, min(lo + step, count)) for lo in range(first, count, step)]


def separable_tables(model: Transformer) -> SeparableTables:
    """F_a, F_b, b_in, W_L, D_a, D_b of a constant-attention model, computed in float64."""
    params = {name: t.detach().to("cpu", torch.float64)[None] for name, t in model.params().items()}
    tables = {name: t[0].numpy() for name, t in token_tables(params, model.cfg).items()}
    return SeparableTables(**tables, act_fn=model.cfg.act_fn)
