"""Sweeps: the many-seed study over a grid of p, width, attention rate and activation.

Each configuration is one task (``run_study`` in its own folder); tasks run one after another, in a
local process pool, or on a Ray cluster. Every task pins torch to ``threads_per_task`` threads (one
by default), so float reductions, and hence results, are identical whichever way the tasks run. On a
GPU the tasks run one after another, each training its seeds as one batch there, and by default
each one's explanations and bounds use every core.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import replace
from pathlib import Path

import numba
import torch

from .devices import resolve_device
from .files import atomic_write_json
from .model import ModelConfig
from .study import process_pool, run_study, study_rows, summarise, write_table
from .train import TrainConfig


def grid(base: ModelConfig, p: Sequence[int] = (), d_mlp: Sequence[int] = (), attention_rate: Sequence[float] = (),
         act_fn: Sequence[str] = ()) -> list[ModelConfig]:
    """Every combination of the given values (an empty list keeps the base value)."""
    axes = {"p": p or [base.p], "d_mlp": d_mlp or [base.d_mlp], "attention_rate": attention_rate or [base.attention_rate],
            "act_fn": act_fn or [base.act_fn]}
    return [replace(base, **dict(zip(axes, values))) for values in itertools.product(*axes.values())]


def config_name(cfg: ModelConfig) -> str:
    return f"p{cfg.p}_dmlp{cfg.d_mlp}_rho{cfg.attention_rate:g}_{cfg.act_fn}"


def is_sweep_summary(summary: dict) -> bool:
    """Whether a ``summary.json`` is a sweep's (one study summary per configuration) rather than one study's."""
    return "n_models" not in summary and all(isinstance(value, dict) for value in summary.values())


def configuration_names(summary: dict) -> list[str]:
    """A sweep summary's configurations in the grid's order of numbers (p7 before p11), not JSON's sorted keys."""
    return sorted(summary, key=lambda name: [(0, int(part), "") if part.isdigit() else (1, 0, part)
                                             for part in re.split(r"(\d+)", name)])


def sweep_rows(summary: dict) -> list[list]:
    """A sweep's configurations as table rows, for the terminal and the report alike: name, models, verdicts and
    share of pizzas."""
    return [[name, summary[name]["n_models"], str(summary[name]["verdicts"]), summary[name]["share_pizza"]]
            for name in configuration_names(summary)]


def run_task(model_cfg: dict, train_cfg: dict, seeds: list[int], out_dir: str, with_bounds: bool,
             threads: int, device: str = "cpu") -> list[dict]:
    """One configuration's study (picklable arguments, for process pools and Ray); returns its rows."""
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    out = Path(out_dir)
    summary = run_study(seeds, out, ModelConfig.from_dict(model_cfg), TrainConfig.from_dict(train_cfg), device=device,
                        with_bounds=with_bounds, progress=False)
    return study_rows(out, summary)


def run_sweep(configs: Sequence[ModelConfig], seeds: Sequence[int], out_dir: Path,
              train_cfg: TrainConfig = TrainConfig(), workers: int = 1, ray_address: str | None = None,
              with_bounds: bool = True, threads_per_task: int | None = None,
              on_done: Callable[[str, list[dict]], None] | None = None, device: str = "cpu") -> dict:
    """Run every configuration's study; write ``models.csv``/``.parquet`` over all and ``summary.json`` per config.

    ``device`` trains and brute-forces every configuration: the CPU, or a GPU, where the configurations run one
    after another in this process. ``threads_per_task`` (default: 1 on the CPU, every core with a GPU) pins torch
    and numba in each task. ``on_done(name, rows)`` hears each configuration as it finishes (in the order they
    finish), for progress.
    """
    out_dir = Path(out_dir)
    on_cpu = resolve_device(device).type == "cpu"
    if not on_cpu and (workers > 1 or ray_address is not None):
        raise ValueError(f"a sweep on device {device!r} runs its configurations one after another there; "
                         f"--workers and --ray are for sweeps on the CPU")
    threads = threads_per_task or (1 if on_cpu else os.cpu_count() or 1)
    names = [config_name(cfg) for cfg in configs]
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        raise ValueError(f"a configuration appears twice in the sweep: {twice}")
    tasks = [(cfg.to_dict(), train_cfg.to_dict(), list(seeds), str(out_dir / name), with_bounds, threads, device)
             for cfg, name in zip(configs, names)]
    finished: dict[str, list[dict]] = {}

    def finish(name: str, rows: list[dict]) -> None:
        finished[name] = rows
        if on_done is not None:
            on_done(name, rows)

    if ray_address is not None:
        try:
            import ray
        except ImportError:
            raise ImportError("a sweep on Ray needs Ray, an optional extra: pip install -e \".[ray]\"") from None
        ray.init(address=None if ray_address == "local" else ray_address, ignore_reinit_error=True,
                 num_cpus=workers if ray_address == "local" else None)
        remote = ray.remote(num_cpus=threads)(run_task)
        pending = {remote.remote(*task): name for task, name in zip(tasks, names)}
        while pending:
            [ready], _ = ray.wait(list(pending))
            finish(pending.pop(ready), ray.get(ready))
    elif workers > 1:
        with process_pool(workers, threads) as pool:
            futures = {pool.submit(run_task, *task): name for task, name in zip(tasks, names)}
            for future in as_completed(futures):
                finish(futures[future], future.result())
    else:
        for task, name in zip(tasks, names):
            finish(name, run_task(*task))
    results = [finished[name] for name in names]
    rows = [row for task_rows in results for row in task_rows]
    write_table(rows, out_dir)
    summary = {name: summarise(task_rows) for name, task_rows in zip(names, results)}
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
