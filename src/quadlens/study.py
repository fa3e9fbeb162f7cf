"""Many models at once: train (or reuse) seeds, explain and bound each, tabulate and summarise.

``run_study`` is resumable at every step: trained seeds are reused by the trainer, and each seed's
explain/bound figures are cached as ``results/seed_NNNN.json``, so an interrupted study loses nothing.
``study_trained`` does the same for the seeds that ``train`` has already trained into a folder of their own.
"""

from __future__ import annotations

import contextlib
import csv
import multiprocessing
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .certify import SCHEMA_VERSION as BOUND_SCHEMA_VERSION
from .certify import bound, load_compiled_kernels
from .checkpoint import load_model
from .checks import is_whole_number
from .explain import SCHEMA_VERSION as EXPLAIN_SCHEMA_VERSION
from .explain import explain
from .files import atomic_write_bytes, atomic_write_json, json_ready, read_json
from .model import ModelConfig, Transformer
from .text import count, named_figure, seed_ranges
from .train import TrainConfig, TrainingDiverged, checked_seeds, run_status, seed_path, train

SUMMARY_COLUMNS = ("n_clusters", "doubling_resultant_min", "quadrature_error_rel_mean", "L1_k2k_min_margin",
                   "L3_k2k_min_margin", "bound_arcs_certified_fraction", "bound_arcs_grouped_certified_fraction",
                   "bound_quadratic_certified_fraction",
                   "bound_quadratic_exact_c_certified_fraction", "gradient_symmetricity", "distance_irrelevance")


def model_row(model: Transformer, with_bounds: bool = True, device: str | None = None) -> dict:
    """One flat row of every figure from explain.json and bound.json (and the training metrics).

    ``device`` runs the brute-force ground truth of the bounds (default: CUDA when present).
    """
    e = explain(model).to_dict()
    clusters = e["clusters"]
    stat = lambda key, fn: float(fn([c[key] for c in clusters])) if clusters else None  # noqa: E731
    row = {**e["model"], "p": model.cfg.p,
           "d_mlp": model.cfg.d_mlp, "attention_rate": model.cfg.attention_rate, "act_fn": model.cfg.act_fn,
           **{f"train_{k}": v for k, v in (model.metadata.get("metrics") or {}).items()},
           "explain_schema_version": e["schema_version"],
           "accuracy": e["accuracy"], "verdict": e["verdict"], "reasons": "; ".join(e["reasons"]),
           "gradient_symmetricity": e["gradient_symmetricity"], "distance_irrelevance": e["distance_irrelevance"],
           "n_clusters": _cluster_count(e), "frequencies": ";".join(str(c["frequency"]) for c in clusters),
           **{key: (e["neurons"] or {}).get(key) for key in ("n_dead", "n_mixed", "n_parity")},
           "doubling_resultant_min": stat("doubling_resultant", np.min),
           "doubling_resultant_mean": stat("doubling_resultant", np.mean),
           "symmetry_resultant_min": stat("symmetry_resultant", np.min),
           "quadrature_error_rel_mean": stat("quadrature_error_rel", np.mean),
           "quadrature_error_rel_max": stat("quadrature_error_rel", np.max)}
    if clusters:
        for name in ("equal_weights", "evenly_spaced"):
            row[f"quadrature_error_{name}_mean"] = float(np.mean([c["baselines"][name]["quadrature_error_rel"]
                                                                 for c in clusters]))
        row["harmonic_ratio_mean"] = stat("harmonic_ratio", lambda xs: np.mean([x["weighted_mean"] for x in xs]))
    for level in e["ladder"]:
        tag = {None: "", False: "_k", True: "_k2k"}[level["harmonics"]]
        for key in ("min_margin", "max_logit_diff_error", "accuracy"):
            row[f"{level['level']}{tag}_{key}"] = level[key]
    if with_bounds and model.cfg.attention_kind == "constant" and model.cfg.act_fn == "relu":
        b = bound(model, device).to_dict()
        for tier in b["tiers"]:
            for key in ("certified_fraction", "min_proven_margin", "tightness_median", "tightness_max", "violations",
                        "ops", "seconds"):
                row[f"bound_{tier['name']}_{key}"] = tier[key]
        row["bound_schema_version"] = b["schema_version"]
        row["brute_force_max_error"] = b["brute_force"]["max_error"]
        row["brute_force_seconds"] = b["brute_force"]["seconds"]
    return json_ready(row)


def _cluster_count(explanation: dict) -> int:
    """Clusters found, also where the picture does not fit and ``explain`` reports no cluster details."""
    measured = {c["name"]: c["value"] for c in explanation["criteria"]}
    return len(explanation["clusters"]) or int(measured.get("clusters", 0))


def summarise(rows: list[dict]) -> dict:
    """Share of pizzas, clusters per model, and the distribution of the headline figures across models."""
    out = {"n_models": len(rows), "seeds": [r["seed"] for r in rows],
           "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in sorted({r["verdict"] for r in rows})},
           "share_pizza": float(np.mean([r["verdict"] == "pizza" for r in rows])) if rows else None,
           "clusters_per_model": {str(k): sum(r["n_clusters"] == k for r in rows)
                                  for k in sorted({r["n_clusters"] for r in rows})}}
    for column in SUMMARY_COLUMNS:
        values = np.array([r[column] for r in rows if r.get(column) is not None], dtype=float)
        if len(values):
            out[column] = {"mean": values.mean(), "median": float(np.median(values)), "min": values.min(),
                           "max": values.max(), "n": len(values)}
    return json_ready(out)


def statistic_rows(summary: dict) -> list[list[str]]:
    """``summarise``'s distributions as table rows, for the terminal and the report alike: each figure's name, then
    its mean, median, minimum and maximum (a share of inputs as a percentage, ``text.named_figure``)."""
    return [[name, *(named_figure(name, value[statistic]) for statistic in ("mean", "median", "min", "max"))]
            for name, value in summary.items() if isinstance(value, dict) and "mean" in value]


LEADING_COLUMNS = ("seed", "p", "d_mlp", "attention_rate", "act_fn", "verdict", "accuracy", "reasons", "n_clusters",
                   "frequencies")  # a table's first columns; the rest follow in alphabetical order


def table_columns(rows: list[dict]) -> list[str]:
    """The union of the rows' columns in one fixed order, whether a row was computed now or read from its cache."""
    found = {key for row in rows for key in row}
    return [c for c in LEADING_COLUMNS if c in found] + sorted(found - set(LEADING_COLUMNS))


def write_table(rows: list[dict], out_dir: Path) -> None:
    """``models.csv`` and ``models.parquet``: one row per model, the union of all columns (``table_columns``)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = table_columns(rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out_dir / "models.csv", text.getvalue().encode())
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), buffer)
    atomic_write_bytes(out_dir / "models.parquet", buffer.getvalue())


def _analyse(model: Transformer, cache: Path, with_bounds: bool, device: str | None = None) -> dict:
    """One model's row, computed and cached."""
    row = model_row(model, with_bounds, device)
    atomic_write_json(cache, row)
    return row


def _analyse_in_worker(path: str, cache: str, with_bounds: bool, threads: int) -> dict:
    """``_analyse`` as a worker's task: picklable arguments, the CPU only, ``threads`` threads."""
    import numba
    import torch

    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    return _analyse(load_model(path), Path(cache), with_bounds, device="cpu")


def _cached_row(cache: Path, model: Transformer, with_bounds: bool) -> dict | None:
    """A model's cached row, unless it cannot be read, is another seed's or (where it records them) another model's
    weights', comes from another explain schema, or lacks bounds or has them from another bound schema: then the
    model is analysed again, and its new row replaces the file."""
    if not cache.exists():
        return None
    try:
        cached = read_json(cache)
    except ValueError:
        return None
    recorded = cached.get("weights_sha256")  # None in rows written before they recorded the weights: taken by seed
    same_model = cached.get("seed") == model.metadata.get("seed") and recorded in (None, model.fingerprint())
    current = same_model and cached.get("explain_schema_version") == EXPLAIN_SCHEMA_VERSION
    if current and (not with_bounds or cached.get("bound_schema_version") == BOUND_SCHEMA_VERSION):
        return cached
    return None


def result_path(out_dir: Path, seed: int) -> Path:
    """Where a study keeps one model's row: its cache, read again instead of analysing the model anew."""
    return Path(out_dir) / "results" / f"seed_{seed:04d}.json"


def study_rows(out_dir: Path, summary: dict) -> list[dict]:
    """The rows of the models a study's ``summary`` covers, in its order (a folder also keeps the rows of seeds
    that an earlier run with more seeds analysed)."""
    seeds = summary.get("seeds")
    if seeds is None:  # a summary written before it named its seeds: every row in the folder
        return [read_json(path) for path in sorted((Path(out_dir) / "results").glob("seed_*.json"))]
    if not isinstance(seeds, list) or not all(map(is_whole_number, seeds)):
        raise ValueError(f"{Path(out_dir) / 'summary.json'}: 'seeds' is {seeds!r}, not a list of whole numbers")
    return [read_json(result_path(out_dir, seed)) for seed in seeds]


def run_study(seeds: Sequence[int], out_dir: Path, model_cfg: ModelConfig = ModelConfig(),
              train_cfg: TrainConfig = TrainConfig(), device: str = "auto", batch_size: int | None = None,
              with_bounds: bool = True, progress: bool = True, workers: int = 1) -> dict:
    """Train or reuse every seed, explain and bound each, write the table, summary and figures.

    ``device`` trains the models and runs the bounds' brute force. ``workers`` > 1 explains and bounds the trained
    models in that many local processes on the CPU instead, each limited to an equal share of the cores.
    """
    out_dir = Path(out_dir)
    try:
        models = train(model_cfg, train_cfg, seeds, out_dir=out_dir / "models", device=device,
                       batch_size=batch_size, progress=progress)
    except TrainingDiverged as error:  # a study of many seeds goes on without the few that diverged
        if not error.models:
            raise
        warnings.warn(f"{error}. The study goes on with the other {count(len(error.models), 'seed')}", stacklevel=2)
        models = error.models
    return _study(models, out_dir / "models", out_dir, with_bounds, progress, workers, device)


def study_trained(models_dir: Path, out_dir: Path, seeds: Sequence[int] | None = None, with_bounds: bool = True,
                  progress: bool = True, workers: int = 1, device: str | None = None) -> dict:
    """``run_study`` for models that ``train`` has already trained into ``models_dir``, with whatever settings it was
    given: its finished seeds (or those of ``seeds``) explained, bounded (brute force on ``device``), tabulated and
    summarised in ``out_dir``."""
    if not Path(models_dir).is_dir():
        raise ValueError(f"{models_dir}: not a folder of checkpoints written by 'quadlens train'")
    status = run_status(models_dir)
    finished = [row["seed"] for row in status["finished"]]
    seeds = finished if seeds is None else checked_seeds(seeds)
    if missing := [seed for seed in seeds if seed not in finished]:
        raise ValueError(f"{status['path']}: no finished checkpoint for seed{'s' if len(missing) > 1 else ''} "
                         f"{seed_ranges(missing)}" + (f" (finished: {seed_ranges(finished)})" if finished else ""))
    if not seeds:
        raise ValueError(f"{status['path']}: no finished checkpoints (seed_NNNN.safetensors) to study"
                         + _unseeded_hint(Path(status["path"])))
    models_dir = Path(status["path"])  # a study folder's models/ where a study folder was given
    return _study([load_model(seed_path(models_dir, seed)) for seed in seeds], models_dir, Path(out_dir), with_bounds,
                  progress, workers, device)


def _unseeded_hint(folder: Path) -> str:
    """What to do with checkpoints that a study cannot take because their file names carry no seed."""
    names = sorted(path.name for path in folder.glob("*.safetensors"))
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"; it holds {shown}, whose names carry no seed: import each with 'quadlens import ... --seed N'"


def _study(models: list[Transformer], models_dir: Path, out_dir: Path, with_bounds: bool, progress: bool,
           workers: int, device: str | None = None) -> dict:
    """Explain and bound each of ``models`` (kept in ``models_dir``) unless its row is cached, then write the table,
    summary and figure. Brute force runs on ``device`` (default: CUDA when present), or on the CPU in a pool."""
    from rich.progress import track

    caches = {m.metadata["seed"]: result_path(out_dir, m.metadata["seed"]) for m in models}
    rows = {m.metadata["seed"]: row for m in models
            if (row := _cached_row(caches[m.metadata["seed"]], m, with_bounds)) is not None}
    todo = [m for m in models if m.metadata["seed"] not in rows]
    if workers > 1 and len(todo) > 1:
        rows.update(_analyse_in_pool(todo, caches, models_dir, with_bounds, workers, progress))
    else:
        for model in track(todo, description="explain + bound", disable=not progress):
            rows[model.metadata["seed"]] = _analyse(model, caches[model.metadata["seed"]], with_bounds, device)
    rows = [rows[m.metadata["seed"]] for m in models]
    write_table(rows, out_dir)
    summary = {**summarise(rows), "models_dir": os.path.relpath(models_dir, out_dir)}  # moves with the two folders
    atomic_write_json(out_dir / "summary.json", summary)
    from .figures import distributions, save

    save(distributions(rows, SUMMARY_COLUMNS), out_dir / "distributions.png", dpi=120)
    return summary


@contextlib.contextmanager
def process_pool(workers: int, threads: int) -> Iterator[ProcessPoolExecutor]:
    """Local worker processes, each limited to ``threads`` threads in every numerical library.

    Spawned, not forked (a fork of a process whose compiled kernels or CUDA started threads is unsafe).
    The thread limits go in through the environment, since BLAS and OpenMP read it once, at import: without
    them each of W processes starts one BLAS thread per core and W·cores threads fight over the cores. Each worker
    ends when this process is gone (``_end_with``).
    """
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(threads) for name in names})
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_end_with,
                                 initargs=(os.getpid(),)) as pool:
            yield pool
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _end_with(parent: int) -> None:
    """Watch, in a worker, the process that started it, and end the worker once that one is gone: killed outright
    (SIGKILL, the out-of-memory killer), it could not stop its pool, whose workers would otherwise finish their
    tasks for no one, beside a resumed run's workers doing the same."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="quadlens-parent-watch", daemon=True).start()


def _analyse_in_pool(models: list[Transformer], caches: dict[int, Path], models_dir: Path, with_bounds: bool,
                     workers: int, progress: bool) -> dict[int, dict]:
    from rich.progress import track

    threads = max(1, (os.cpu_count() or 1) // workers)
    seeds = [m.metadata["seed"] for m in models]
    if with_bounds:  # compile the kernels once, here, into numba's cache, rather than once per worker
        load_compiled_kernels()
    with process_pool(workers, threads) as pool:
        futures = [pool.submit(_analyse_in_worker, str(seed_path(models_dir, s)), str(caches[s]), with_bounds, threads)
                   for s in seeds]
        rows = [f.result() for f in track(futures, description=f"explain + bound ({workers} processes)",
                                          disable=not progress)]
    return dict(zip(seeds, rows))
