"""Full-batch AdamW training of many seeds at once, as one stacked computation, resumable.

Each seed has its own initialisation and its own train/test split; the loss summed over seeds has, for
each seed's parameters, exactly that seed's gradient, and AdamW acts element by element, so a seed trained
in a batch follows the same trajectory as trained alone (up to float rounding). On a GPU the loss and its
gradient come from the fused kernels of :mod:`quadlens.fused` (the same function, computed without
materialising the activations).

With ``out_dir``, a run writes ``run.json`` (its configs), each batch's resume state every ``checkpoint_every``
epochs, and one checkpoint per seed when its batch ends. Run again to resume: finished seeds are loaded, not
retrained, and interrupted batches continue from their last resume states (a run of other seeds in the same
folder leaves them be).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from . import fused
from .checks import is_whole_number
from .checkpoint import (DTYPES, CheckpointError, load_metadata, load_model, load_tensors, save_model,
                         save_tensors, validate_run_details)
from .devices import resolve_device
from .files import abandoned_writes, atomic_write_json, read_json, remove_abandoned_writes
from .model import (ModelConfig, Transformer, cross_entropy64, forward, init_params, stack_params, token_tables,
                    unstack_params)
from .task import ModularAddition, train_size
from .text import percent

RESUME_GLOB = "resume*.safetensors"  # each batch's resume state (``resume_path``; ``resume.safetensors`` before)
MATMUL_PRECISIONS = ("highest", "high", "medium")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. Defaults are the paper's: AdamW lr 1e-3, wd 1.0, betas (0.9, 0.98), 10 000 full-batch epochs."""

    epochs: int = 10_000
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 10
    train_fraction: float = 0.8
    eval_every: int = 100
    checkpoint_every: int = 1000
    early_stop: bool = False
    matmul_precision: str = "highest"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        for name in ("epochs", "eval_every", "checkpoint_every", "warmup_steps"):
            value = getattr(self, name)
            if not is_whole_number(value):
                raise TypeError(f"{name} must be a whole number, got {type(value).__name__} ({value!r})")
            least = 0 if name == "warmup_steps" else 1
            if value < least:
                raise ValueError(f"{name} must be at least {least}, got {value}")
            object.__setattr__(self, name, int(value))  # a plain int, as the checkpoints' JSON metadata needs
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number above 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number at least 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {self.train_fraction}")
        if self.matmul_precision not in MATMUL_PRECISIONS:
            raise ValueError(f"matmul_precision must be one of {MATMUL_PRECISIONS}, got {self.matmul_precision!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then constant."""
        return self.lr * min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else self.lr

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**data)


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


class SeedBatch:
    """Seeds trained together: stacked parameters ``[S, ...]``, one AdamW, per-seed splits.

    ``use_fused`` picks the loss: the fused kernels of :mod:`quadlens.fused` (the default on CUDA with
    Triton, for float32 ReLU models with constant attention, at the p where they are the faster:
    :func:`quadlens.fused.faster_than_autograd`) or autograd through :func:`quadlens.model.forward`.
    """

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, seeds: Sequence[int],
                 device: torch.device, use_fused: bool | None = None):
        self.model_cfg, self.train_cfg, self.seeds, self.device = model_cfg, train_cfg, list(seeds), device
        task = ModularAddition(model_cfg.p)
        splits = [task.split(seed, train_cfg.train_fraction) for seed in self.seeds]
        self.a, self.b, self.targets = (t.to(device) for t in (task.a, task.b, task.targets))
        self.train_index = torch.stack([train for train, _ in splits]).to(device)
        self.test_index = torch.stack([test for _, test in splits]).to(device)
        dtype = DTYPES[train_cfg.dtype]
        stacked = stack_params([init_params(model_cfg, seed) for seed in self.seeds])
        self.params = {name: t.to(device, dtype).requires_grad_(True) for name, t in stacked.items()}
        self.optimizer = torch.optim.AdamW(list(self.params.values()), lr=train_cfg.lr, betas=train_cfg.betas,
                                           weight_decay=train_cfg.weight_decay)
        can_fuse = fused.available(device) and fused.supports(model_cfg.act_fn, model_cfg.attention_kind,
                                                              train_cfg.dtype)
        if use_fused and not can_fuse:
            raise ValueError(f"the fused loss needs Triton, a CUDA device, float32, ReLU and constant attention; "
                             f"got device {device}, {train_cfg.dtype}, act_fn {model_cfg.act_fn!r}, "
                             f"{model_cfg.attention_kind} attention")
        default = can_fuse and device.type == "cuda" and fused.faster_than_autograd(model_cfg.p)
        self.fused = default if use_fused is None else use_fused
        if self.fused:  # each seed's training pairs weighted 1/n_train: the loss is each seed's mean
            n_train = self.train_index.shape[1]
            self.train_weight = torch.zeros(len(self.seeds), model_cfg.p ** 2, device=device).scatter_(
                1, self.train_index, 1.0 / n_train).view(len(self.seeds), model_cfg.p, model_cfg.p)
        self._fused_ran = False
        self.epoch = 0
        self.history: list[dict] = []

    def step(self) -> None:
        """One full-batch AdamW step on every seed."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.train_cfg.lr_at(self.epoch)
        self.optimizer.zero_grad(set_to_none=True)
        if not (self.fused and self._fused_backward()):
            a, b = self.a[self.train_index], self.b[self.train_index]
            loss = cross_entropy64(forward(self.params, self.model_cfg, a, b), self.targets[self.train_index])
            loss.sum().backward()
        self.optimizer.step()
        self.epoch += 1

    def _fused_backward(self) -> bool:
        """Gradients through the fused loss. If its kernels fail on their first use (say, a GPU without the
        resources for a large p): a warning, False, and this batch trains through autograd from then on."""
        try:
            loss = fused.fused_loss(token_tables(self.params, self.model_cfg), self.train_weight,
                                    self.train_cfg.matmul_precision)
            loss.sum().backward()
        except Exception as error:  # noqa: BLE001 - any compile or launch failure has a correct fallback
            if self._fused_ran:
                raise
            warnings.warn(f"fused loss failed ({type(error).__name__}: {error}); training through autograd",
                          stacklevel=3)
            self.fused = False
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self._fused_ran = True
        return True

    @torch.no_grad()
    def evaluate(self) -> dict[str, Tensor]:
        """Per-seed train/test loss and accuracy over all p² inputs (float64, on the CPU)."""
        logits = forward(self.params, self.model_cfg, self.a[None], self.b[None])
        log_probs = logits.double().log_softmax(-1)
        correct_log_prob = log_probs.gather(-1, self.targets.expand(len(self.seeds), -1)[..., None])[..., 0]
        is_correct = (logits.argmax(-1) == self.targets).double()
        metrics = {}
        for split, index in (("train", self.train_index), ("test", self.test_index)):
            metrics[f"{split}_loss"] = -correct_log_prob.gather(1, index).mean(1).cpu()
            metrics[f"{split}_accuracy"] = is_correct.gather(1, index).mean(1).cpu()
        if not self.history or self.history[-1]["epoch"] != self.epoch:
            self.history.append({"epoch": self.epoch, **{k: v.tolist() for k, v in metrics.items()}})
        return metrics

    def done(self, metrics: dict[str, Tensor]) -> bool:
        """Whether the batch stops: its epochs are over, every seed has diverged (its loss is no longer finite,
        ``diverged``), or, with ``early_stop``, every seed is right on every test input."""
        if self.epoch >= self.train_cfg.epochs or not metrics["train_loss"].isfinite().any():
            return True
        return self.train_cfg.early_stop and bool((metrics["test_accuracy"] == 1).all())

    def diverged(self, index: int) -> str | None:
        """Why seed ``index``'s model is not worth keeping, or None: its parameters, or its last train loss (its
        logits overflow), are not finite."""
        if not all(t[index].isfinite().all() for t in self.params.values()):
            what = "its parameters are"
        elif not math.isfinite(self.history[-1]["train_loss"][index]):
            what = "its train loss is"
        else:
            return None
        lost = next((h["epoch"] for h in self.history if not math.isfinite(h["train_loss"][index])), self.epoch)
        return (f"seed {self.seeds[index]}: training diverged, {what} not finite after epoch {self.epoch}"
                + (f" (its train loss first was at epoch {lost})" if lost < self.epoch else ""))

    def state(self) -> tuple[dict[str, Tensor], dict]:
        """Everything needed to resume: parameters, AdamW moments and counters."""
        tensors = {f"param.{name}": t for name, t in self.params.items()}
        for name, t in self.params.items():
            for key, value in self.optimizer.state.get(t, {}).items():
                tensors[f"adam.{name}.{key}"] = value
        return tensors, {"epoch": self.epoch, "seeds": self.seeds, "history": self.history}

    def load_state(self, tensors: dict[str, Tensor], meta: dict) -> None:
        with torch.no_grad():
            for name, t in self.params.items():
                t.copy_(tensors[f"param.{name}"])
                moments = {key: value if key == "step" else value.to(self.device)
                           for key in ("step", "exp_avg", "exp_avg_sq")
                           if (value := tensors.get(f"adam.{name}.{key}")) is not None}
                if moments:
                    self.optimizer.state[t] = moments
        self.epoch, self.history = meta["epoch"], meta["history"]

    def models(self) -> list[dict[str, Tensor]]:
        return [{name: t.detach().cpu() for name, t in seed.items()} for seed in unstack_params(self.params)]


def seed_path(out_dir: Path, seed: int) -> Path:
    return Path(out_dir) / f"seed_{seed:04d}.safetensors"


def _check_run_dir(out_dir: Path, model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """Record the run's configs, or refuse to mix runs with different configs in one folder."""
    run_file = out_dir / "run.json"
    configs = {"model_config": model_cfg.to_dict(), "train_config": train_cfg.to_dict()}
    if run_file.exists():
        try:
            previous = read_json(run_file)
        except ValueError as e:
            raise ValueError(f"{e}; it holds the run's configs: use another --out, or remove the file if this "
                             f"folder's checkpoints were made with the settings given now") from e
        for key, value in configs.items():
            stored = {k: (list(v) if isinstance(v, tuple) else v) for k, v in value.items()}
            recorded = previous.get(key) if isinstance(previous.get(key), dict) else {}
            differs = sorted(k for k in stored if recorded.get(k) != stored[k])
            if differs:
                raise ValueError(f"{run_file}: this folder holds a run with a different {key} "
                                 f"(differs in {differs}); use another --out or the same settings")
    else:
        atomic_write_json(run_file, configs)


def _finished(out_dir: Path | None, seed: int, model_cfg: ModelConfig) -> Transformer | None:
    """The seed's checkpoint in ``out_dir``, if there is a readable one; an error if it holds another seed or
    another architecture (a file copied in by hand), which retraining would overwrite."""
    path = None if out_dir is None else seed_path(out_dir, seed)
    if path is None or not path.exists():
        return None
    try:
        model = load_model(path)
    except CheckpointError:
        return None  # unreadable: retrain this seed, the new file will replace it atomically
    if model.metadata.get("seed") != seed or model.cfg != model_cfg:
        raise CheckpointError(f"{path}: holds seed {model.metadata.get('seed')!r} of {model.cfg}, where this run "
                              f"trains seed {seed} of {model_cfg}; move the file away to train it here")
    return model


def _finished_models(out_dir: Path | None, seeds: Iterable[int], model_cfg: ModelConfig) -> dict[int, Transformer]:
    """The models of those of ``seeds`` that are finished in ``out_dir`` (``_finished``), by seed."""
    return {seed: model for seed in seeds if (model := _finished(out_dir, seed, model_cfg)) is not None}


def train(model_cfg: ModelConfig = ModelConfig(), train_cfg: TrainConfig = TrainConfig(),
          seeds: Sequence[int] = (0,), out_dir: str | Path | None = None, device: str = "auto",
          batch_size: int | None = None, progress: bool = True) -> list[Transformer]:
    """Train one model per seed, ``batch_size`` seeds at a time as one computation.

    By default all seeds form one batch on a GPU; on a CPU, where a step is memory-bound and batching
    measured slower per seed (BENCHMARKS.md), seeds are trained one at a time.

    Returns the trained models in seed order, each with ``.metadata`` (configs, seed, metrics, history).
    """
    seeds = checked_seeds(seeds)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (or None: all seeds on a GPU, 1 on a CPU), got {batch_size}")
    train_size(model_cfg.p, train_cfg.train_fraction)
    dev = resolve_device(device)
    out_dir = None if out_dir is None else Path(out_dir)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _check_run_dir(out_dir, model_cfg, train_cfg)
    results = _finished_models(out_dir, seeds, model_cfg)
    pending = [seed for seed in seeds if seed not in results]
    batch_size = batch_size or (len(pending) if dev.type == "cuda" else 1)
    states = _resume_states(out_dir)
    batches = _plan_batches(states, pending, max(batch_size, 1))
    diverged: list[str] = []
    with _progress_display(progress) as display, matmul_precision(train_cfg.matmul_precision):
        for planned in batches:
            # another process training in the same folder may have finished some of them since it was read
            results.update(_finished_models(out_dir, planned, model_cfg))
            if batch_seeds := [seed for seed in planned if seed not in results]:
                for model in _train_batch(model_cfg, train_cfg, batch_seeds, dev, out_dir, states, display, diverged):
                    results[model.metadata["seed"]] = model
    if diverged:
        raise TrainingDiverged(f"{'; '.join(diverged)}. Nothing is saved for {'it' if len(diverged) == 1 else 'them'}"
                               f"{' (the other seeds are)' if results else ''}; a smaller learning rate than "
                               f"lr={train_cfg.lr:g}, or a longer warm-up, may train",
                               [results[seed] for seed in seeds if seed in results])
    return [results[seed] for seed in seeds]


class TrainingDiverged(ValueError):
    """Seeds whose parameters or loss stopped being finite, named with when; ``models`` holds the other seeds'
    models, trained and saved."""

    def __init__(self, message: str, models: Sequence[Transformer] = ()):
        super().__init__(message)
        self.models = list(models)


MAX_SEED = 2**63 - 1  # torch's generators take a seed as a 64-bit integer


def checked_seeds(seeds: Iterable[int]) -> list[int]:
    """The seeds as plain ints in their order, each once; a clear error for a string, a fraction, a negative
    number or none at all."""
    if isinstance(seeds, str):
        raise TypeError(f"seeds must be whole numbers such as range(4) or [0, 3], got the string {seeds!r}")
    seeds = list(seeds)
    for seed in seeds:
        if not is_whole_number(seed):
            raise TypeError(f"a seed must be a whole number, got {type(seed).__name__} ({seed!r})")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"a seed must lie in [0, 2**63 - 1], got {seed}")
    if not seeds:
        raise ValueError("no seeds to train")
    return list(dict.fromkeys(int(seed) for seed in seeds))


ResumeStates = dict[tuple[int, ...], Path]  # a batch's seeds -> the file that keeps its resume state


def resume_path(out_dir: Path, seeds: Sequence[int]) -> Path:
    """Where the batch of ``seeds`` keeps its resume state: one file per batch, so that a batch run later in the
    same folder never overwrites another's."""
    return Path(out_dir) / f"resume_{seeds[0]:04d}-{seeds[-1]:04d}_{len(seeds)}.safetensors"


def _resume_states(out_dir: Path | None) -> ResumeStates:
    """The folder's resume states by their batch's seeds (``resume.safetensors`` of earlier versions too), from
    their headers: a state's tensors are read when its batch starts. A broken one (cut short by a crash of the
    disk, say) is passed over with a warning: its batch restarts from epoch 0, and its next checkpoint replaces
    the file."""
    states: ResumeStates = {}
    for path in [] if out_dir is None else sorted(out_dir.glob(RESUME_GLOB)):
        try:
            meta = _resume_metadata(path)
        except CheckpointError as e:
            _pass_over(e)
            continue
        states[tuple(meta["seeds"])] = path
    return states


def _resume_metadata(path: Path) -> dict:
    """A resume state's header, with its batch's seeds and the epoch it reached checked."""
    meta = load_metadata(path)
    seeds, epoch = meta.get("seeds"), meta.get("epoch")
    if not isinstance(seeds, list) or not seeds or not all(map(is_whole_number, seeds)):
        raise CheckpointError(f"{path}: no list of seeds in its metadata")
    if not is_whole_number(epoch) or epoch < 0:
        raise CheckpointError(f"{path}: metadata 'epoch' is {epoch!r}, not a whole number at least 0")
    return meta


def _read_configs(run_file: Path) -> dict[str, dict]:
    """A folder's ``run.json``, its configs checked as training checks them."""
    configs = read_json(run_file)
    try:
        model_cfg = ModelConfig.from_dict(configs["model_config"])
        train_cfg = TrainConfig.from_dict(configs["train_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{run_file}: not the configs of a run ({type(e).__name__}: {e})") from e
    return {"model_config": model_cfg.to_dict(), "train_config": train_cfg.to_dict()}


def _models_folder(folder: Path) -> Path:
    """Where a folder's checkpoints are: in the folder itself, or, for a study, in its ``models`` folder or the one
    its ``summary.json`` names (a study of seeds trained elsewhere, ``quadlens reproduce --models``)."""
    if (folder / "run.json").exists():
        return folder
    named = "models"
    if (folder / "summary.json").exists():
        try:
            recorded = read_json(folder / "summary.json").get("models_dir")
        except ValueError:
            recorded = None
        if isinstance(recorded, str):
            named = recorded
    return Path(os.path.normpath(folder / named)) if (folder / named).is_dir() else folder


def run_status(out_dir: str | Path) -> dict:
    """What a training folder holds, from its files' headers (no tensor is read): the run's configs, each finished
    seed with its epochs and test accuracy, each interrupted batch with the epoch its resume state reached, each
    file that cannot be read, with why, and the temporary files that killed writes left. For a study folder, the
    folder that holds its models is read."""
    out_dir = _models_folder(Path(out_dir))
    status: dict = {"path": str(out_dir), "model_config": None, "train_config": None, "finished": [],
                    "interrupted": [], "unreadable": [], "abandoned_writes": _abandoned(out_dir)}
    run_file = out_dir / "run.json"
    if run_file.exists():
        try:
            status.update(_read_configs(run_file))
        except ValueError as e:
            status["unreadable"].append({"file": run_file.name, "error": str(e)})
    for path in sorted(out_dir.glob("seed_*.safetensors")):
        try:
            meta = load_metadata(path)
            validate_run_details(path, meta)
            if meta.get("seed") is None or path != seed_path(out_dir, meta["seed"]):
                raise CheckpointError(f"{path}: holds seed {meta.get('seed')!r}, not the seed its name gives")
        except CheckpointError as e:
            status["unreadable"].append({"file": path.name, "error": str(e)})
            continue
        status["finished"].append({"seed": meta.get("seed"), "epochs_trained": meta.get("epochs_trained"),
                                   "test_accuracy": (meta.get("metrics") or {}).get("test_accuracy")})
    for path in sorted(out_dir.glob(RESUME_GLOB)):
        try:
            meta = _resume_metadata(path)
        except CheckpointError as e:
            status["unreadable"].append({"file": path.name, "error": str(e)})
            continue
        status["interrupted"].append({"seeds": meta["seeds"], "epoch": meta["epoch"], "file": path.name})
    return status


def _abandoned(folder: Path) -> list[dict]:
    """The temporary files that killed writes left in ``folder``, with their sizes."""
    found = []
    for tmp in abandoned_writes(folder):
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile, by a write of its file
            found.append({"file": tmp.name, "bytes": tmp.stat().st_size})
    return found


def _pass_over(error: CheckpointError) -> None:
    """Warn that a broken resume state is not used, naming the line that called ``train``."""
    warnings.warn(f"{error}; its seeds restart from epoch 0", stacklevel=4)  # _pass_over, its caller, train


def _plan_batches(states: ResumeStates, pending: list[int], batch_size: int) -> list[list[int]]:
    """Split pending seeds into batches; interrupted batches (with a resume state) go first, intact."""
    resumed, taken = [], set()
    for seeds in states:
        if taken.isdisjoint(seeds) and set(seeds) <= set(pending):
            resumed.append(list(seeds))
            taken.update(seeds)
    rest = [seed for seed in pending if seed not in taken]
    return resumed + [rest[i:i + batch_size] for i in range(0, len(rest), batch_size)]


def _train_batch(model_cfg: ModelConfig, train_cfg: TrainConfig, seeds: list[int], device: torch.device,
                 out_dir: Path | None, states: ResumeStates, display, diverged: list[str]) -> list[Transformer]:
    """Train one batch to its end and return its models; each seed that diverged is named in ``diverged``."""
    batch = SeedBatch(model_cfg, train_cfg, seeds, device)
    resume_file = None if out_dir is None else resume_path(out_dir, seeds)
    elapsed, resumed_from = 0.0, None
    if tuple(seeds) in states:
        resumed_from = states.pop(tuple(seeds))
        try:
            tensors, meta = load_tensors(resumed_from)
        except CheckpointError as e:  # damaged, or gone since the folder was read (its batch finished just now)
            _pass_over(e)
        else:
            batch.load_state(tensors, meta)
            elapsed = meta.get("wall_time_seconds", 0.0)
    task_id = display.add_task(f"seeds {seeds[0]}..{seeds[-1]} ({len(seeds)})", total=train_cfg.epochs,
                               completed=batch.epoch, loss=float("nan"), acc="-")
    start = time.perf_counter() - elapsed
    metrics = batch.evaluate()
    while not batch.done(metrics):
        batch.step()
        if batch.epoch % train_cfg.eval_every == 0 or batch.epoch == train_cfg.epochs:
            metrics = batch.evaluate()
            display.update(task_id, completed=batch.epoch, loss=float(metrics["train_loss"].mean()),
                           acc=percent(float(metrics["test_accuracy"].min())))
        if resume_file is not None and batch.epoch % train_cfg.checkpoint_every == 0 and not batch.done(metrics):
            tensors, meta = batch.state()
            save_tensors(resume_file, tensors, {**meta, "wall_time_seconds": time.perf_counter() - start})
    wall_time = time.perf_counter() - start
    display.update(task_id, completed=train_cfg.epochs)
    models = _finish_batch(batch, metrics, wall_time, out_dir, diverged)
    for path in (resume_file, resumed_from):  # the batch is done: its state, wherever it was kept, goes
        if path is not None:
            path.unlink(missing_ok=True)
            remove_abandoned_writes(path)  # with what killed writes of it left
    return models


def _finish_batch(batch: SeedBatch, metrics: dict[str, Tensor], wall_time: float,
                  out_dir: Path | None, diverged: list[str]) -> list[Transformer]:
    models = []
    for i, (seed, params) in enumerate(zip(batch.seeds, batch.models())):
        if (reason := batch.diverged(i)) is not None:
            diverged.append(reason)
            continue
        fields = {"seed": seed, "train_config": batch.train_cfg.to_dict(), "epochs_trained": batch.epoch,
                  "metrics": {k: float(v[i]) for k, v in metrics.items()},
                  "history": [{"epoch": h["epoch"], **{k: h[k][i] for k in metrics}} for h in batch.history],
                  "wall_time_seconds": wall_time, "batch_size": len(batch.seeds), "device": str(batch.device),
                  "fused_loss": batch.fused}
        if out_dir is not None:
            save_model(seed_path(out_dir, seed), batch.model_cfg, params, **fields)
        model = Transformer(batch.model_cfg, params)
        model.metadata = {"model_config": batch.model_cfg.to_dict(), **fields}
        models.append(model)
    return models


@contextlib.contextmanager
def _progress_display(enabled: bool):
    """A rich progress bar (epoch, mean train loss, worst test accuracy); plain lines where the output is not a
    terminal (a log file, a batch job), where a bar draws nothing until the end; or a silent stand-in."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3g}  min test acc {task.fields[acc]}"),
                        TimeElapsedColumn(), disable=not enabled)
    if enabled and not progress.console.is_terminal:
        yield _ProgressLines(progress.console.print)
        return
    with progress:
        yield progress


class _ProgressLines:
    """The progress bar's figures as plain lines: at an evaluation at most once per ``interval`` seconds, and the
    last evaluation's when the task completes."""

    def __init__(self, write: Callable[[str], None], interval: float = 10.0) -> None:
        self.write, self.interval, self.tasks = write, interval, []

    def add_task(self, description: str, total: int, completed: int = 0, **fields: object) -> int:
        self.tasks.append({"description": description, "total": total, "start": time.perf_counter(),
                           "written": 0.0, "pending": None})
        return len(self.tasks) - 1

    def update(self, task_id: int, completed: int, loss: float | None = None, acc: str | None = None) -> None:
        task, now = self.tasks[task_id], time.perf_counter()
        if loss is not None:  # an evaluation
            task["pending"] = (f"{task['description']}: epoch {completed}/{task['total']}  loss {loss:.3g}  "
                               f"min test acc {acc}  {now - task['start']:.0f} s")
        if task["pending"] and (now - task["written"] >= self.interval or completed >= task["total"]):
            self.write(task["pending"])
            task["written"], task["pending"] = now, None
