"""Training throughput: seed-epochs per second, one seed at a time vs many seeds batched, CPU and CUDA.

    python benchmarks/train_speed.py                      # CPU and (if present) CUDA, paper configuration
    python benchmarks/train_speed.py --full-run           # also: one seed to 100 % test accuracy, wall time
    python benchmarks/train_speed.py --devices cuda --batch 151 --full-run --json out.json
                                                          # 151 seeds x 10 000 epochs on the GPU, wall time
    python benchmarks/train_speed.py --devices cuda --p 227 --d-mlp 908 --batch 4 --steps 20
                                                          # a larger model: the fused loss in blocks of rows

Three ways of taking a full-batch AdamW step of the paper configuration (p=59, d=128, 4 heads, d_mlp=512):
  naive    - the plain per-seed loop: the whole transformer on every training pair (both positions,
             attention computed), the reference point of the issue;
  single   - quadlens's step for one seed (per-token tables, MLP at the last position only);
  batched  - quadlens's step for S seeds stacked into one computation.
On a GPU with Triton, single and batched use the fused loss (quadlens.fused); the batch is also timed
through autograd, and the fused loss is first checked against autograd in float64.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from quadlens import fused
from quadlens.model import ModelConfig, cross_entropy64, forward, token_tables
from quadlens.train import SeedBatch, TrainConfig, train


def naive_step_fn(cfg: ModelConfig, device: torch.device):
    """A plain PyTorch training step that runs the full transformer on every training pair."""
    batch = SeedBatch(cfg, TrainConfig(), [0], device)
    P = {k: v.detach()[0].clone().requires_grad_(True) for k, v in batch.params.items()}
    index = batch.train_index[0]
    a, b, y = batch.a[index], batch.b[index], batch.targets[index]
    opt = torch.optim.AdamW(P.values(), lr=1e-3, betas=(0.9, 0.98), weight_decay=1.0)

    def step():
        x = torch.stack([P["W_E"][a] + P["W_pos"][0], P["W_E"][b] + P["W_pos"][1]], dim=1)
        v = torch.einsum("npd,hdk->nhpk", x, P["W_V"])
        z = 0.5 * v.sum(2)  # constant attention (1/2, 1/2)
        resid = x[:, 1] + torch.einsum("nhk,hkd->nd", z, P["W_O"])
        logits = (resid + torch.relu(resid @ P["W_in"] + P["b_in"]) @ P["W_out"] + P["b_out"]) @ P["W_U"]
        loss = cross_entropy64(logits[None], y)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_steps(step, n_steps: int, device: torch.device) -> float:
    """Seconds per step, after warm-up."""
    for _ in range(5):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n_steps


def measure(cfg: ModelConfig, device: torch.device, batch_size: int, n_steps: int, precision: str) -> list[dict]:
    rows = []
    torch.set_float32_matmul_precision(precision)
    can_fuse = fused.available(device) or None  # None: the trainer's default, autograd on the CPU
    methods = [("naive", 1, False), ("single", 1, can_fuse), ("batched", batch_size, can_fuse)]
    if can_fuse:  # what the fused loss buys: the same batch through autograd
        methods.append(("batched", batch_size, False))
    for name, seeds, use_fused in methods:
        if name == "naive":
            step, loss = naive_step_fn(cfg, device), "autograd"
        else:
            batch = SeedBatch(cfg, TrainConfig(matmul_precision=precision), list(range(seeds)), device, use_fused)
            step, loss = batch.step, ("fused" if batch.fused else "autograd")
        seconds = time_steps(step, n_steps, device)
        rows.append({"device": str(device), "p": cfg.p, "d_mlp": cfg.d_mlp, "method": name, "loss": loss,
                     "seeds": seeds, "matmul_precision": precision, "ms_per_step": 1e3 * seconds,
                     "seed_epochs_per_s": seeds / seconds, "minutes_for_10k_epochs": 10_000 * seconds / 60})
    single = next(r for r in rows if r["method"] == "single")["seed_epochs_per_s"]
    naive = next(r for r in rows if r["method"] == "naive")["seed_epochs_per_s"]
    for r in rows:
        r["speedup_vs_single"] = r["seed_epochs_per_s"] / single
        r["speedup_vs_naive"] = r["seed_epochs_per_s"] / naive
    return rows


def check_fused(cfg: ModelConfig, device: torch.device, precision: str, n_seeds: int = 4) -> dict:
    """Fused loss and gradients against autograd in float64, on random seeds' models."""
    batch = SeedBatch(cfg, TrainConfig(), list(range(100, 100 + n_seeds)), device, use_fused=True)
    params64 = {k: v.detach().double().requires_grad_(True) for k, v in batch.params.items()}
    a, b, y = batch.a[batch.train_index], batch.b[batch.train_index], batch.targets[batch.train_index]
    reference = cross_entropy64(forward(params64, cfg, a, b), y)
    names = [k for k in params64 if k not in ("W_Q", "W_K")]
    want = torch.autograd.grad(reference.sum(), [params64[k] for k in names])
    params32 = {k: v.detach().requires_grad_(True) for k, v in batch.params.items()}
    loss = fused.fused_loss(token_tables(params32, cfg), batch.train_weight, precision)
    got = torch.autograd.grad(loss.sum(), [params32[k] for k in names])
    errors = {k: float((g.double() - w).norm() / w.norm()) for k, g, w in zip(names, got, want)}
    loss_error = ((loss - reference).abs() / reference).max().item()
    return {"p": cfg.p, "precision": precision, "loss_rel_error": loss_error,
            "grad_rel_error_max": max(errors.values()), "grad_rel_errors": errors}


def full_run(device: torch.device, n_seeds: int, precision: str) -> dict:
    """On a CPU: one seed until 100 % test accuracy (early stop). On a GPU: ``n_seeds`` seeds, all 10 000 epochs."""
    cuda = device.type == "cuda"
    train_cfg = TrainConfig(early_stop=not cuda, eval_every=100 if cuda else 50, matmul_precision=precision)
    start = time.perf_counter()
    models = train(ModelConfig(), train_cfg, seeds=range(n_seeds if cuda else 1), device=str(device), progress=False)
    seconds = time.perf_counter() - start
    test_accuracy = [m.metadata["metrics"]["test_accuracy"] for m in models]
    return {"device": str(device), "seeds": len(models), "matmul_precision": precision,
            "epochs": models[0].metadata["epochs_trained"], "seconds": seconds,
            "test_accuracy_min": min(test_accuracy), "test_accuracy_median": sorted(test_accuracy)[len(models) // 2],
            "seeds_at_100pct_test": sum(acc == 1.0 for acc in test_accuracy), "test_accuracy": test_accuracy}


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="*", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    parser.add_argument("--batch", type=int, default=None, help="seeds per batch (default: 8 on CPU, 151 on CUDA)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 30 on CPU, 200 on CUDA)")
    parser.add_argument("--precision", default="highest", choices=["highest", "high"])
    parser.add_argument("--full-run", action="store_true",
                        help="also train: on a CPU one seed to 100 %% test accuracy, on a GPU --batch seeds in full")
    parser.add_argument("--p", type=int, default=59, help="modulus of the timed steps (the full run keeps 59)")
    parser.add_argument("--d-mlp", type=int, default=512)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    cfg = ModelConfig(p=args.p, d_mlp=args.d_mlp)
    results = {"machine": machine(), "rows": [], "full_runs": []}
    for name in args.devices:
        device = torch.device(name)
        cuda = device.type == "cuda"
        batch_size = args.batch or (151 if cuda else 8)
        if fused.available(device):
            results.setdefault("fused_checks", []).append(check_fused(cfg, device, args.precision))
            print(json.dumps({k: v for k, v in results["fused_checks"][-1].items() if k != "grad_rel_errors"}))
        results["rows"] += measure(cfg, device, batch_size, args.steps or (200 if cuda else 30), args.precision)
        if args.full_run:
            results["full_runs"].append(full_run(device, batch_size, args.precision))
    print(json.dumps(results["machine"]))
    print(f"p = {cfg.p}, d_mlp = {cfg.d_mlp}")
    print("| device | method | loss | seeds | ms/step | seed-epochs/s | min for 10k epochs (all seeds) "
          "| vs single | vs naive |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        print(f"| {r['device']} | {r['method']} | {r['loss']} | {r['seeds']} | {r['ms_per_step']:.2f} | "
              f"{r['seed_epochs_per_s']:.1f} | {r['minutes_for_10k_epochs']:.2f} | {r['speedup_vs_single']:.2f}x | "
              f"{r['speedup_vs_naive']:.1f}x |")
    for r in results["full_runs"]:
        print(f"full run on {r['device']} ({r['matmul_precision']}): {r['seeds']} seeds, {r['epochs']} epochs in "
              f"{r['seconds']:.1f} s; test accuracy min {r['test_accuracy_min']:.4f}, "
              f"{r['seeds_at_100pct_test']}/{r['seeds']} seeds at 100 %")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
