"""The training loss of constant-attention ReLU models as two fused GPU kernels (Triton), for many seeds.

With constant attention the loss over all p² pairs needs only the separable tables (THEORY §1):
``logits(a, b) = relu(F_a[a] + F_b[b]) W_L + D_a[a] + D_b[b]`` (``b_in`` folded into ``F_b``). The plain
autograd step materialises ``[S, p², d_mlp]`` activations several times per step and is bound by memory
traffic; here they never leave the chip:

- ``_forward_kernel`` (one program per seed, ``a`` and block of rows ``b``): the logits, the float64
  log-softmax, the weighted loss and its gradient ``G = w·(softmax − onehot)`` with respect to the logits;
- ``_backward_kernel`` (one program per seed and block of neurons, looping over blocks of ``b`` and over
  ``a``): recomputes the activations from ``F_a``, ``F_b`` and returns the gradients of ``F_a``, ``F_b`` and
  ``W_L`` without atomics (``F_a``'s as one part per block of ``b``, summed afterwards).

Gradients of ``D_a``, ``D_b`` are sums of ``G``. Everything upstream (embeddings, attention, unembedding)
stays in autograd. The weights ``w[s, a, b]`` select the training pairs (``1/n_train`` on them, 0 elsewhere),
so the loss is each seed's mean cross-entropy, exactly as :func:`quadlens.model.cross_entropy64` computes it.
Without Triton or a GPU (or with ``QUADLENS_NO_FUSED=1``), :func:`available` is False and training uses
the autograd step.

Each program holds all BP outputs c of its rows (BP the power of two at or above p, for the softmax), so
its blocks have fewer rows and neurons as p grows (:func:`tiles`): at most 2¹³ elements per ``[rows, BP]``
operand. (A single block of all p rows asked for 328 KB of shared memory at p = 227, more than an H200's
232 KB.) Compiled for an H100 (:func:`shared_memory`, no GPU needed), the kernels ask for at most 82 KB at
p = 59 (one block, as the paper's model has always run), 103 KB at p = 227 and 198 KB at p = 911 (so an
A100's 164 KB holds them up to p = 512). From p = 1025 (BP = 2048) they would need about 390 KB, and training
asked to fuse there falls back to autograd with a warning (``SeedBatch``). In blocks of rows (p > 64) they were
measured no faster than autograd, or slower, so training fuses by default only at p ≤ 64
(:func:`faster_than_autograd`). ``G``'s rows hold p floats rounded up to a multiple of 16, not BP: ``4·p²·GP``
bytes per seed (3.0 GB at p = 911), half as much as BP's just above a power of two.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only install: the trainer falls back to autograd
    triton = None

FORWARD_BLOCK_K = 64  # neurons per step of the forward kernel's loop, at most
BACKWARD_BLOCK_K = 32  # neurons per program of the backward kernel, at most
TILE_ELEMENTS = 2 ** 13  # a block's rows (b) or neurons times BP stay within this


def available(device: torch.device) -> bool:
    """Whether the fused loss can run on ``device``: a CUDA device (or Triton's CPU interpreter) with Triton
    installed, unless the environment sets ``QUADLENS_NO_FUSED=1``."""
    if triton is None or os.environ.get("QUADLENS_NO_FUSED") == "1":
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _forward_kernel(F_a, F_b, W_L, D_a, D_b, weight, loss_parts, G, p: tl.constexpr, d_mlp: tl.constexpr,
                        BP: tl.constexpr, GP: tl.constexpr, BB: tl.constexpr, BK: tl.constexpr,
                        PRECISION: tl.constexpr):
        s = tl.program_id(0)
        a = tl.program_id(1)
        tile = tl.program_id(2)
        rows = tile * BB + tl.arange(0, BB)  # b
        cols = tl.arange(0, BP)  # c
        ks = tl.arange(0, BK)
        row_ok, col_ok = rows < p, cols < p
        acc = tl.zeros((BB, BP), dtype=tl.float32)
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
        tl.store(loss_parts + (s * p + a) * tl.num_programs(2) + tile, -tl.sum(w * log_prob_target, axis=0))
        grad = (probs / total[:, None] - tl.where(is_target, 1.0, 0.0)) * w[:, None]
        tl.store(G + ((s * p + a) * p + rows[:, None]) * GP + cols[None, :], grad.to(tl.float32),
                 mask=row_ok[:, None] & (cols < GP)[None, :])  # zero beyond p

    @triton.jit
    def _backward_kernel(F_a, F_b, W_L, G, grad_F_a_parts, grad_F_b, grad_W_L, p: tl.constexpr,
                         d_mlp: tl.constexpr, BP: tl.constexpr, GP: tl.constexpr, BB: tl.constexpr,
                         BK: tl.constexpr, PRECISION: tl.constexpr):
        s = tl.program_id(0)
        k = tl.program_id(1) * BK + tl.arange(0, BK)
        cols = tl.arange(0, BP)
        k_ok, col_ok = k < d_mlp, cols < p
        wl = tl.load(W_L + (s * d_mlp + k[:, None]) * p + cols[None, :],
                     mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        acc_W_L = tl.zeros((BK, BP), dtype=tl.float32)
        for b0 in range(0, p, BB):
            rows = b0 + tl.arange(0, BB)
            row_ok = rows < p
            fb = tl.load(F_b + (s * p + rows[:, None]) * d_mlp + k[None, :],
                         mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            acc_F_b = tl.zeros((BB, BK), dtype=tl.float32)
            for a in range(0, p):
                fa = tl.load(F_a + (s * p + a) * d_mlp + k, mask=k_ok, other=0.0)
                pre = fa[None, :] + fb
                hidden = tl.maximum(pre, 0.0)
                g = tl.load(G + ((s * p + a) * p + rows[:, None]) * GP + cols[None, :],
                            mask=row_ok[:, None] & col_ok[None, :], other=0.0)
                acc_W_L += tl.dot(tl.trans(hidden), g, input_precision=PRECISION)
                grad_pre = tl.where(pre > 0, tl.dot(g, tl.trans(wl), input_precision=PRECISION), 0.0)
                part = grad_F_a_parts + ((s * tl.cdiv(p, BB) + b0 // BB) * p + a) * d_mlp + k
                tl.store(part, tl.sum(grad_pre, axis=0), mask=k_ok)
                acc_F_b += grad_pre
            tl.store(grad_F_b + (s * p + rows[:, None]) * d_mlp + k[None, :], acc_F_b,
                     mask=row_ok[:, None] & k_ok[None, :])
        tl.store(grad_W_L + (s * d_mlp + k[:, None]) * p + cols[None, :], acc_W_L,
                 mask=k_ok[:, None] & col_ok[None, :])


def _precision(matmul_precision: str) -> str:
    """torch's float32 matmul precision as Triton's: 'highest' is exact float32, else TF32."""
    return "ieee" if matmul_precision == "highest" else "tf32"


class Tiles(NamedTuple):
    """Block sizes: ``BP`` the power of two at or above p (the outputs c, the softmax's extent), ``GP`` the
    multiple of 16 at or above p (the row length of the logits' gradient ``G`` in memory, aligned for wide
    loads), ``BB`` the inputs b per program, ``BK_forward``/``BK_backward`` the neurons per block of each kernel."""
    BP: int
    GP: int
    BB: int
    BK_forward: int
    BK_backward: int


def tiles(p: int) -> Tiles:
    """Blocks of at most ``TILE_ELEMENTS`` per ``[BB, BP]`` or ``[BK, BP]`` operand (at least 16, for ``tl.dot``),
    so that shared memory stays within an H100's up to p = 1024 (p = 59: the whole ``[64, 64]`` at once)."""
    BP = max(16, triton.next_power_of_2(p))
    fit = TILE_ELEMENTS // BP
    return Tiles(BP, -(-p // 16) * 16, min(BP, max(16, fit)), min(FORWARD_BLOCK_K, max(16, fit)),
                 min(BACKWARD_BLOCK_K, max(16, fit)))


def faster_than_autograd(p: int) -> bool:
    """Whether the fused loss is the faster default at this p: where one program holds every input b of a row
    (p ≤ 64: the paper's p = 59 trained 2.4× faster than through autograd, 151 seeds in TF32 on an H100). Where
    the rows come in blocks it was measured slower (4 seeds, TF32, an H200: 13.1 against 9.2 ms per step at
    p = 227, 327 against 78 at p = 457; BENCHMARKS.md)."""
    return tiles(p).BB >= p


def shared_memory(p: int, d_mlp: int, capability: int = 90, precision: str = "tf32") -> dict[str, int]:
    """Bytes of shared memory each kernel asks for at this size, compiled for CUDA ``capability`` (90: H100,
    H200) with Triton's own ptxas and no GPU: whether the fused loss fits a card, checked anywhere."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    t = tiles(p)
    needs = {}
    for name, kernel, BK in (("forward", _forward_kernel, t.BK_forward), ("backward", _backward_kernel, t.BK_backward)):
        constexprs = dict(p=p, d_mlp=d_mlp, BP=t.BP, GP=t.GP, BB=t.BB, BK=BK, PRECISION=precision)
        signature = {arg: "constexpr" if arg in constexprs else "*fp64" if arg == "loss_parts" else "*fp32"
                     for arg in kernel.arg_names}
        source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
        needs[name] = triton.compile(source, target=GPUTarget("cuda", capability, 32)).metadata.shared
    return needs


class _FusedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, F_a: Tensor, F_b: Tensor, W_L: Tensor, D_a: Tensor, D_b: Tensor, weight: Tensor,
                precision: str) -> Tensor:
        S, p, d_mlp = F_a.shape
        t = tiles(p)
        n_tiles = triton.cdiv(p, t.BB)
        F_a, F_b, W_L, D_a, D_b = (x.contiguous().float() for x in (F_a, F_b, W_L, D_a, D_b))
        loss_parts = torch.empty(S, p, n_tiles, dtype=torch.float64, device=F_a.device)
        G = torch.empty(S, p, p, t.GP, dtype=torch.float32, device=F_a.device)
        _forward_kernel[(S, p, n_tiles)](F_a, F_b, W_L, D_a, D_b, weight.contiguous(), loss_parts, G, p, d_mlp,
                                         BP=t.BP, GP=t.GP, BB=t.BB, BK=t.BK_forward, PRECISION=precision)
        ctx.save_for_backward(F_a, F_b, W_L, G)
        ctx.precision = precision
        return loss_parts.sum((1, 2))

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        F_a, F_b, W_L, G = ctx.saved_tensors
        S, p, d_mlp = F_a.shape
        t = tiles(p)
        G = G * grad_loss.float()[:, None, None, None]
        grad_F_a_parts = F_a.new_empty(S, triton.cdiv(p, t.BB), p, d_mlp)
        grad_F_b, grad_W_L = torch.empty_like(F_b), torch.empty_like(W_L)
        grid = (S, triton.cdiv(d_mlp, t.BK_backward))
        _backward_kernel[grid](F_a, F_b, W_L, G, grad_F_a_parts, grad_F_b, grad_W_L, p, d_mlp, BP=t.BP, GP=t.GP,
                               BB=t.BB, BK=t.BK_backward, PRECISION=ctx.precision)
        grad_D_a = G.sum(2)[..., :p]
        grad_D_b = G.sum(1)[..., :p]
        return grad_F_a_parts.sum(1), grad_F_b, grad_W_L, grad_D_a, grad_D_b, None, None


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
