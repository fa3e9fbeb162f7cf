"""The training loss of constant-attention ReLU models as two fused GPU kernels (Triton), for many seeds.

With constant attention the loss over all p² pairs needs only the separable tables (THEORY §1):
``logits(a, b) = relu(F_a[a] + F_b[b]) W_L + D_a[a] + D_b[b]`` (``b_in`` folded into ``F_b``). The plain
autograd step materialises ``[S, p², d_mlp]`` activations several times per step and is bound by memory
traffic; here they never leave the chip:

- ``_forward_kernel`` (one program per seed and ``a``, rows ``b``): the logits, the float64 log-softmax,
  the weighted loss and its gradient ``G = w·(softmax − onehot)`` with respect to the logits;
- ``_backward_kernel`` (one program per seed and block of neurons, looping over ``a``): recomputes the
  activations from ``F_a``, ``F_b`` and returns the gradients of ``F_a``, ``F_b`` and ``W_L`` without atomics.

Gradients of ``D_a``, ``D_b`` are sums of ``G``. Everything upstream (embeddings, attention, unembedding)
stays in autograd. The weights ``w[s, a, b]`` select the training pairs (``1/n_train`` on them, 0 elsewhere),
so the loss is each seed's mean cross-entropy, exactly as :func:`quadlens.model.cross_entropy64` computes it.
Without Triton or a GPU (or with ``QUADLENS_NO_FUSED=1``), :func:`available` is False and training uses
the autograd step.

The forward kernel holds ``[BP, BP]`` logits and ``[BP, BK]`` operand blocks, BP the power of two at or above
p, so its shared memory grows as p²: measured on an H200, p = 227 asked for 328 KB of the 232 KB there, and
training fell back to autograd with a warning (``SeedBatch``). The paper's p = 59 (BP = 64) runs fused.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only install: the trainer falls back to autograd
    triton = None

FORWARD_BLOCK_K = 64
BACKWARD_BLOCK_K = 32


def available(device: torch.device) -> bool:
    """Whether the fused loss can run on ``device``: a CUDA device (or Triton's CPU interpreter) with Triton
    installed, unless the environment sets ``QUADLENS_NO_FUSED=1``."""
    if triton is None or os.environ.get("QUADLENS_NO_FUSED") == "1":
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _forward_kernel(F_a, F_b, W_L, D_a, D_b, weight, loss_parts, G, p: tl.constexpr, d_mlp: tl.constexpr,
                        BP: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr):
        s = tl.program_id(0)
        a = tl.program_id(1)
        rows = tl.arange(0, BP)  # b
        cols = tl.arange(0, BP)  # c
        ks = tl.arange(0, BK)
        row_ok, col_ok = rows < p, cols < p
        acc = tl.zeros((BP, BP), dtype=tl.float32)
        for k0 in range(0, d_mlp, BK):
            k = k0 + ks
            k_ok = k < d_mlp
            fa = tl.load(F_a + (s * p + a) * d_mlp + k, mask=k_ok, other=0.0)
            fb = tl.load(F_b + (s * p + rows[:, None]) * d_mlp + k[None, :],
                         mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            hidden = tl.maximum(fa[None, :] + fb, 0.0)
            wl = tl.load(W_L + (s * d_mlp + k[:, None]) * p + cols[None, :],
                         mask=k_ok[:, None] & col_ok[None, :], other=0.0)
            acc += tl.dot(hidden, wl, input_precision=PRECISION)
        da = tl.load(D_a + (s * p + a) * p + cols, mask=col_ok, other=0.0)
        db = tl.load(D_b + (s * p + rows[:, None]) * p + cols[None, :],
                     mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        logits = (acc + da[None, :] + db).to(tl.float64)
        logits = tl.where(col_ok[None, :], logits, float("-inf"))
        shifted = logits - tl.max(logits, axis=1)[:, None]
        probs = tl.exp(shifted)
        total = tl.sum(probs, axis=1)
        target = (a + rows) % p
        is_target = cols[None, :] == target[:, None]
        log_prob_target = tl.sum(tl.where(is_target, shifted, 0.0), axis=1) - tl.log(total)
        w = tl.load(weight + (s * p + a) * p + rows, mask=row_ok, other=0.0).to(tl.float64)
        tl.store(loss_parts + s * p + a, -tl.sum(w * log_prob_target, axis=0))
        grad = (probs / total[:, None] - tl.where(is_target, 1.0, 0.0)) * w[:, None]
        tl.store(G + ((s * p + a) * BP + rows[:, None]) * BP + cols[None, :], grad.to(tl.float32))

    @triton.jit
    def _backward_kernel(F_a, F_b, W_L, G, grad_F_a, grad_F_b, grad_W_L, p: tl.constexpr, d_mlp: tl.constexpr,
                         BP: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr):
        s = tl.program_id(0)
        k = tl.program_id(1) * BK + tl.arange(0, BK)
        rows = tl.arange(0, BP)
        cols = tl.arange(0, BP)
        k_ok, row_ok, col_ok = k < d_mlp, rows < p, cols < p
        fb = tl.load(F_b + (s * p + rows[:, None]) * d_mlp + k[None, :],
                     mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        wl = tl.load(W_L + (s * d_mlp + k[:, None]) * p + cols[None, :],
                     mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        acc_W_L = tl.zeros((BK, BP), dtype=tl.float32)
        acc_F_b = tl.zeros((BP, BK), dtype=tl.float32)
        for a in range(0, p):
            fa = tl.load(F_a + (s * p + a) * d_mlp + k, mask=k_ok, other=0.0)
            pre = fa[None, :] + fb
            hidden = tl.maximum(pre, 0.0)
            g = tl.load(G + ((s * p + a) * BP + rows[:, None]) * BP + cols[None, :])
            acc_W_L += tl.dot(tl.trans(hidden), g, input_precision=PRECISION)
            grad_pre = tl.where(pre > 0, tl.dot(g, tl.trans(wl), input_precision=PRECISION), 0.0)
            tl.store(grad_F_a + (s * p + a) * d_mlp + k, tl.sum(grad_pre, axis=0), mask=k_ok)
            acc_F_b += grad_pre
        tl.store(grad_F_b + (s * p + rows[:, None]) * d_mlp + k[None, :], acc_F_b,
                 mask=row_ok[:, None] & k_ok[None, :])
        tl.store(grad_W_L + (s * d_mlp + k[:, None]) * p + cols[None, :], acc_W_L,
                 mask=k_ok[:, None] & col_ok[None, :])


def _precision(matmul_precision: str) -> str:
    """torch's float32 matmul precision as Triton's: 'highest' is exact float32, else TF32."""
    return "ieee" if matmul_precision == "highest" else "tf32"


def _block(p: int) -> int:
    return max(16, triton.next_power_of_2(p))


class _FusedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, F_a: Tensor, F_b: Tensor, W_L: Tensor, D_a: Tensor, D_b: Tensor, weight: Tensor,
                precision: str) -> Tensor:
        S, p, d_mlp = F_a.shape
        BP = _block(p)
        F_a, F_b, W_L, D_a, D_b = (t.contiguous().float() for t in (F_a, F_b, W_L, D_a, D_b))
        loss_parts = torch.empty(S, p, dtype=torch.float64, device=F_a.device)
        G = torch.empty(S, p, BP, BP, dtype=torch.float32, device=F_a.device)
        _forward_kernel[(S, p)](F_a, F_b, W_L, D_a, D_b, weight.contiguous(), loss_parts, G, p, d_mlp,
                                BP=BP, BK=FORWARD_BLOCK_K, PRECISION=precision)
        ctx.save_for_backward(F_a, F_b, W_L, G)
        ctx.precision = precision
        return loss_parts.sum(1)

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        F_a, F_b, W_L, G = ctx.saved_tensors
        S, p, d_mlp = F_a.shape
        G = G * grad_loss.float()[:, None, None, None]
        grads = [torch.empty_like(t) for t in (F_a, F_b, W_L)]
        grid = (S, triton.cdiv(d_mlp, BACKWARD_BLOCK_K))
        _backward_kernel[grid](F_a, F_b, W_L, G, *grads, p, d_mlp, BP=G.shape[-1], BK=BACKWARD_BLOCK_K,
                               PRECISION=ctx.precision)
        grad_D_a = G.sum(2)[..., :p]
        grad_D_b = G.sum(1)[:, :p, :p]
        return (*grads, grad_D_a, grad_D_b, None, None)


def fused_loss(tables: dict[str, Tensor], weight: Tensor, matmul_precision: str = "highest") -> Tensor:
    """Per-seed loss ``Σ_{a,b} w[s,a,b]·CE(logits(a, b), a + b)``, ``[S]`` float64, differentiable in the tables.

    ``tables`` are :func:`quadlens.model.token_tables` (stacked, float32); ``weight`` is ``[S, p, p]``.
    """
    if not available(tables["F_a"].device):
        raise RuntimeError("the fused loss needs Triton and a CUDA device (or TRITON_INTERPRET=1)")
    F_b = tables["F_b"] + tables["b_in"][:, None, :]
    return _FusedLoss.apply(tables["F_a"], F_b, tables["W_L"], tables["D_a"], tables["D_b"], weight.float(),
                            _precision(matmul_precision))


def supports(act_fn: str, attention_kind: str, dtype: str) -> bool:
    """The fused loss covers float32 ReLU models with constant attention (the separable form)."""
    return act_fn == "relu" and attention_kind == "constant" and dtype == "float32"
