"""Training throughput: seed-epochs per second, one seed at a time vs many seeds batched, CPU and CUDA.

    python benchmarks/train_speed.py                      # CPU and (if present) CUDA, paper configuration
    python benchmarks/train_speed.py --full-run           # also: one seed to 100 % test accuracy, wall time
    python benchmarks/train_speed.py --devices cuda --batch 151 --json out.json

Three ways of taking a full-batch AdamW step of the paper configuration (p=59, d=128, 4 heads, d_mlp=512):
  naive    - the plain per-seed loop: the whole transformer on every training pair (both positions,
             attention computed), the reference point of the issue;
  single   - quadlens's step for one seed (per-token tables, MLP at the last position only);
  batched  - quadlens's step for S seeds stacked into one computation.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from quadlens.model import ModelConfig, cross_entropy64
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


def measure(device: torch.device, batch_size: int, n_steps: int, precision: str) -> list[dict]:
    cfg = ModelConfig()
    rows = []
    torch.set_float32_matmul_precision(precision)
    for name, seeds in (("naive", 1), ("single", 1), ("batched", batch_size)):
        if name == "naive":
            step = naive_step_fn(cfg, device)
        else:
            step = SeedBatch(cfg, TrainConfig(matmul_precision=precision), list(range(seeds)), device).step
        seconds = time_steps(step, n_steps, device)
        rows.append({"device": str(device), "method": name, "seeds": seeds, "matmul_precision": precision,
                     "ms_per_step": 1e3 * seconds, "seed_epochs_per_s": seeds / seconds,
                     "minutes_for_10k_epochs": 10_000 * seconds / 60})
    single = next(r for r in rows if r["method"] == "single")["seed_epochs_per_s"]
    for r in rows:
        r["speedup_vs_single"] = r["seed_epochs_per_s"] / single
    return rows


def full_run(device: torch.device) -> dict:
    """One paper-configuration seed trained until 100 % test accuracy (early stop), and the full 10 000 epochs."""
    start = time.perf_counter()
    model, = train(ModelConfig(), TrainConfig(early_stop=True, eval_every=50), seeds=[0], device=str(device),
                   progress=False)
    to_full_accuracy = time.perf_counter() - start
    return {"device": str(device), "epochs_to_100pct_test": model.metadata["epochs_trained"],
            "seconds_to_100pct_test": to_full_accuracy,
            "test_accuracy": model.metadata["metrics"]["test_accuracy"]}


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
    parser.add_argument("--full-run", action="store_true", help="also train one seed to 100 %% test accuracy")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = {"machine": machine(), "rows": [], "full_runs": []}
    for name in args.devices:
        device = torch.device(name)
        cuda = device.type == "cuda"
        rows = measure(device, args.batch or (151 if cuda else 8), args.steps or (200 if cuda else 30), args.precision)
        results["rows"] += rows
        if args.full_run:
            results["full_runs"].append(full_run(device))
    print(json.dumps(results["machine"]))
    print("| device | method | seeds | ms/step | seed-epochs/s | min for 10k epochs (all seeds) | vs single |")
    print("|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        print(f"| {r['device']} | {r['method']} | {r['seeds']} | {r['ms_per_step']:.2f} | "
              f"{r['seed_epochs_per_s']:.1f} | {r['minutes_for_10k_epochs']:.2f} | {r['speedup_vs_single']:.2f}x |")
    for r in results["full_runs"]:
        print(f"full run on {r['device']}: 100% test accuracy after {r['epochs_to_100pct_test']} epochs, "
              f"{r['seconds_to_100pct_test']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
