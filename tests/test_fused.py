"""The fused GPU training loss, run on the CPU through Triton's interpreter (in a subprocess, since the
interpreter is chosen when the kernels are defined), against autograd through the model's forward pass."""

import inspect
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import small_config
from quadlens import TrainConfig
from quadlens.train import SeedBatch

triton = pytest.importorskip("triton")

CHECK = textwrap.dedent("""
    import os
    import torch
    from quadlens.model import ModelConfig, cross_entropy64, forward, init_params, stack_params, token_tables
    from quadlens import fused
    from quadlens.fused import fused_loss
    from quadlens.task import ModularAddition
    from quadlens.train import SeedBatch, TrainConfig

    device = torch.device(os.environ["CHECK_DEVICE"])
    torch.manual_seed(0)
    whole = fused.TILE_ELEMENTS
    # the last case in blocks of 16 inputs b and 16 neurons, as p >= 457 runs: three row tiles, the last partial
    for p, d_mlp, n_seeds, scale, tile in [(7, 16, 2, 3.0, whole), (11, 40, 3, 1.0, whole), (17, 64, 2, 3.0, whole),
                                           (37, 40, 2, 1.0, 256)]:
        fused.TILE_ELEMENTS = tile
        cfg = ModelConfig(p=p, d_model=16, n_heads=2, d_head=8, d_mlp=d_mlp)
        params = stack_params([init_params(cfg, s) for s in range(n_seeds)])
        params = {k: (v * scale).to(device).requires_grad_(True) for k, v in params.items()}
        with torch.no_grad():  # biases that put some neurons off for some inputs
            params["b_in"].normal_()
            params["b_out"].normal_()
        task = ModularAddition(p)
        a, b, targets = (t.to(device) for t in (task.a, task.b, task.targets))
        train_index = torch.stack([task.split(s, 0.8)[0] for s in range(n_seeds)]).to(device)
        reference = cross_entropy64(forward(params, cfg, a[train_index], b[train_index]), targets[train_index])
        weight = torch.zeros(n_seeds, p * p, device=device).scatter_(1, train_index, 1.0 / train_index.shape[1])
        loss = fused_loss(token_tables(params, cfg), weight.view(n_seeds, p, p))
        torch.testing.assert_close(loss, reference, rtol=1e-6, atol=0)
        # a non-uniform upstream gradient
        scale_per_seed = torch.arange(1.0, n_seeds + 1, dtype=torch.float64, device=device)
        names = [k for k in params if k not in ("W_Q", "W_K")]  # unused by constant attention
        want = torch.autograd.grad((reference * scale_per_seed).sum(), [params[k] for k in names])
        got = torch.autograd.grad((loss * scale_per_seed).sum(), [params[k] for k in names])
        for name, g, w in zip(names, got, want):
            assert (g - w).norm() <= 1e-5 * w.norm(), (p, name, ((g - w).norm() / w.norm()).item())
    fused.TILE_ELEMENTS = whole

    cfg = ModelConfig(p=11, d_model=16, n_heads=2, d_head=8, d_mlp=24)
    train_cfg = TrainConfig(epochs=20)
    batches = [SeedBatch(cfg, train_cfg, [3, 4], device, use_fused=f) for f in (True, False)]
    for batch in batches:
        for _ in range(20):
            batch.step()
    alone = SeedBatch(cfg, train_cfg, [4], device, use_fused=True)
    for _ in range(20):
        alone.step()
    for name, t in batches[0].params.items():
        torch.testing.assert_close(t, batches[1].params[name], rtol=0, atol=1e-5)
        torch.testing.assert_close(t[1:], alone.params[name], rtol=0, atol=1e-6)
    print("fused ok")
""")


def run_check(device: str, **env: str) -> None:
    env = {**os.environ, "CHECK_DEVICE": device, **env}
    result = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "fused ok" in result.stdout, result.stderr[-3000:]


def test_fused_loss_and_gradients_match_autograd_and_train_the_same():
    """Loss and gradients against autograd (four sizes, p not a power of two, uneven d_mlp, the inputs b in
    several blocks); 20 steps of two seeds trained together through the fused loss against autograd, and
    against one of them alone."""
    run_check("cpu", TRITON_INTERPRET="1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_kernels_on_the_gpu_match_autograd():
    """The same checks with the compiled kernels on a real GPU (the test above runs them interpreted)."""
    run_check("cuda")


H100_SHARED_MEMORY = 232448  # bytes a block may have on compute capability 9.0 (H100, H200)


@pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION")
@pytest.mark.parametrize("p, d_mlp", [(59, 512), (227, 908), (911, 3644)])
def test_fused_kernels_fit_an_h100s_shared_memory(p, d_mlp):
    """Compiled for an H100 on the CPU: the paper's p, and the sizes at which one block of all p inputs b
    asked 328 KB (p = 227, measured on an H200) and would ask more (p = 911). Each kernel in both precisions."""
    from quadlens import fused

    if "constexprs" not in inspect.signature(triton.compiler.ASTSource).parameters:
        pytest.skip(f"Triton {triton.__version__} compiles through another interface")
    for precision in ("ieee", "tf32"):
        needs = fused.shared_memory(p, d_mlp, capability=90, precision=precision)
        assert max(needs.values()) <= H100_SHARED_MEMORY, (p, precision, needs)


def test_the_fused_loss_is_the_default_only_where_it_was_measured_faster():
    """All inputs b of a row in one program (p <= 64) is where the fused loss beat autograd on a GPU; in blocks
    of rows (p = 113 to 457) it was as slow or slower (BENCHMARKS.md)."""
    from quadlens import fused

    assert fused.faster_than_autograd(59) and fused.faster_than_autograd(64)
    assert not any(fused.faster_than_autograd(p) for p in (65, 113, 227, 457, 911))


def test_fused_loss_is_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="fused loss needs"):
        SeedBatch(small_config(act_fn="gelu"), TrainConfig(), [0], torch.device("cpu"), use_fused=True)


def test_autograd_is_the_default_on_the_cpu():
    assert not SeedBatch(small_config(), TrainConfig(), [0], torch.device("cpu")).fused


def test_a_failing_fused_loss_falls_back_to_autograd(monkeypatch):
    from quadlens import fused

    def broken(*args, **kwargs):
        raise RuntimeError("out of resources")

    batch = SeedBatch(small_config(), TrainConfig(), [0], torch.device("cpu"), use_fused=False)
    reference = SeedBatch(small_config(), TrainConfig(), [0], torch.device("cpu"), use_fused=False)
    batch.fused, batch.train_weight = True, None
    monkeypatch.setattr(fused, "fused_loss", broken)
    with pytest.warns(UserWarning, match="fused loss failed .*out of resources"):
        batch.step()
    reference.step()
    assert not batch.fused
    for name, t in batch.params.items():
        torch.testing.assert_close(t, reference.params[name])
