"""The ``quadlens`` command line."""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn, Optional

import torch
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from typer.core import TyperGroup

from . import __version__
from .checkpoint import CheckpointError, bundled_model_path, load_model
from .files import abandoned_writes, atomic_write_json, read_json
from .model import ModelConfig, Transformer, attention_kind
from .task import ModularAddition
from .text import count, named_figure, percent, seed_ranges
from .train import TrainConfig, run_status, train as train_models


class _Commands(TyperGroup):
    def invoke(self, ctx):
        """Any command, with a file that cannot be read or written (a full disk, a read-only or vanished folder)
        reported as one line that names it, not a traceback; every write is atomic, so no good file was replaced."""
        try:
            return super().invoke(ctx)
        except OSError as error:
            _fail(_named(error))


def _named(error: OSError) -> str:
    """``FILE: what went wrong`` (the file written, not its temporary stand-in: ``quadlens.files``)."""
    return f"{error.filename}: {error.strerror}" if error.filename and error.strerror else str(error)


app = typer.Typer(help="Read a modular-addition transformer's MLP as a quadrature scheme.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False, cls=_Commands)
console = Console()


_WARNED: set[str] = set()


def _show_warning(message: Warning | str, *_) -> None:
    """A warning as one line, ``warning: …``, once per command, without the source line Python would show."""
    if str(message) not in _WARNED:
        _WARNED.add(str(message))
        console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", soft_wrap=True)


@app.callback()
def _every_command() -> None:
    _WARNED.clear()
    warnings.showwarning = _show_warning


def _fail(message: str) -> NoReturn:
    """Print an error that names the problem and exit with status 2. Printed as one logical line, never
    broken at the terminal's width, so that file paths and keys in it stay whole for copying and grepping."""
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


def _table(*headers: str, **options) -> Table:
    """A terminal table whose figures stay whole at 80 columns (also in a log or a pipe, which rich sizes at 80):
    compact borders, and a cell that cannot fit breaks onto more lines rather than lose characters."""
    columns = (Column(header, overflow="fold") for header in headers)
    return Table(*columns, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, **options)


PARTIAL = ".partial"  # the folder inside --out where ``quadlens bound`` keeps what an interrupted run has done
MODEL_ARG = typer.Argument(None, help="Checkpoint (.safetensors); default: the bundled pizza model.")


def parse_seeds(text: str) -> list[int]:
    """'0-150', '3', '1,4,7-9' -> seed list."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            seeds.extend(range(int(first), int(last or first) + 1))
    except ValueError:
        raise typer.BadParameter(f"seeds must look like '0-150' or '1,4,7-9', got {text!r}") from None
    if not seeds:
        raise typer.BadParameter(f"no seeds in {text!r}")
    return seeds


def parse_attention(text: str) -> float:
    """'constant' -> 1, 'learned' -> 0, or an attention rate ρ in [0, 1]."""
    named = {"constant": 1.0, "pizza": 1.0, "learned": 0.0, "softmax": 0.0, "clock": 0.0}
    if text in named:
        return named[text]
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"attention must be 'constant', 'learned' or a rate in [0, 1], got {text!r}") from None


def _integers(option: str, text: str) -> list[int]:
    """A comma-separated list of integers, or an error that names the option."""
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{option} must be integers separated by commas, got {text!r}") from None


def parse_constant_attention(text: str) -> tuple[float, ...]:
    """'0.5,0.5' -> (0.5, 0.5): the constant attention weights on positions 0 and 1."""
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--constant-attention must be two numbers like '0.5,0.5', got {text!r}") from None


def check_device(value: Optional[str]) -> Optional[str]:
    """A ``--device`` value torch knows and this machine has ('auto' and None pass), or a clear error."""
    from .devices import resolve_device

    try:
        resolve_device(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def _no_file_in_the_way(folder: Path, out: Path) -> None:
    """A clear error when a file stands where ``folder`` (``out``'s folder, or ``out`` itself) or a parent should be."""
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise typer.BadParameter(f"{part} is a file, not a folder" + ("" if part == out else f" (in {out})"))
            return


def _writable(folder: Path, out: Path) -> None:
    """A clear error when ``folder`` cannot be made or written in (read-only, no permission, no space for a file);
    the check leaves nothing behind."""
    missing = [part for part in (folder, *folder.parents) if not part.exists()]  # the deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise typer.BadParameter(f"cannot write in {folder}" + ("" if folder == out else f" (for {out})")
                                 + f": {error.strerror or error}") from None
    finally:
        for part in missing:
            with contextlib.suppress(OSError):
                part.rmdir()


def output_folder(path: Path) -> Path:
    """An ``--out`` folder that exists or can be made and written in, checked before any work starts: a file in its
    way or a read-only folder is named at once, not met after hours of training or brute force."""
    _no_file_in_the_way(path, path)
    _writable(path, path)
    return path


def output_file(path: Path) -> Path:
    """An ``--out`` file that is not a folder, in a folder that exists or can be made (``output_folder``)."""
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder; give the file's name")
    _no_file_in_the_way(path.parent, path)
    _writable(path.parent, path)
    return path


def safetensors_file(path: Path) -> Path:
    """An ``--out`` file for a safetensors state dict (``output_file``), named so: its JSON config goes beside it
    under the same stem, which must not be the file itself."""
    if path.suffix != ".safetensors":
        raise typer.BadParameter(f"{path}: the state dict is written as safetensors; name it *.safetensors")
    return output_file(path)


BATCH_SIZE = typer.Option(None, min=1, help="Seeds per batched computation (default: all on a GPU, 1 on a CPU).")


def check_figure_format(value: str) -> str:
    """A ``--figure-format`` that ``quadlens.figures.save`` writes, checked before any work starts."""
    from .figures import checked_format

    try:
        return checked_format(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


FIGURE_FORMAT = typer.Option("png", help="png, or pdf or svg (vector, for a paper).", callback=check_figure_format)


def _load(model: Optional[Path]) -> Transformer:
    try:
        return load_model(model)
    except CheckpointError as e:
        _fail(str(e))


def accuracy(model: Transformer) -> float:
    """Accuracy over all p² inputs, recomputed from the weights."""
    with torch.no_grad():
        logits = model.all_logits().reshape(-1, model.cfg.p)
    return float((logits.argmax(-1) == ModularAddition(model.cfg.p).targets).double().mean())


def describe(model: Transformer, path: Path) -> dict:
    """What ``quadlens info`` reports, as plain data."""
    meta = model.metadata
    return {"path": str(path), "model_config": model.cfg.to_dict(), "attention_kind": model.cfg.attention_kind,
            "n_params": model.cfg.n_params(), "accuracy_all_inputs": accuracy(model), "seed": meta.get("seed"),
            "weights_sha256": model.fingerprint(),
            "metrics": meta.get("metrics"), "epochs_trained": meta.get("epochs_trained"),
            "train_config": meta.get("train_config"), "source": meta.get("source"),
            "quadlens_version": meta.get("quadlens_version")}


def _recorded(value: object) -> str:
    """A metadata value for a table: a model trained elsewhere and imported has no seed or epochs recorded."""
    return "not recorded" if value is None else str(value)


def _architecture(cfg: dict) -> dict[str, str]:
    """A model config's rows in ``info``'s tables (from ``ModelConfig.to_dict``)."""
    rate = cfg["attention_rate"]
    return {"architecture": f"p={cfg['p']}  d_model={cfg['d_model']}  heads={cfg['n_heads']}x{cfg['d_head']}  "
                            f"d_mlp={cfg['d_mlp']}  act={cfg['act_fn']}",
            "attention": f"{attention_kind(rate)} (rate ρ={rate}, constant part {cfg['constant_attention']})"}


@app.command()
def info(model: Optional[Path] = typer.Argument(None, help="Checkpoint (.safetensors), or a folder written by "
                                                          "'quadlens train' or 'reproduce'; default: the bundled "
                                                          "pizza model."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Describe a checkpoint (config, accuracies, attention kind, parameter count), or a training folder (its
    finished seeds and interrupted batches)."""
    if model is not None and model.is_dir():
        return _info_run(model, as_json)
    path = model or bundled_model_path()
    loaded = _load(model)
    summary = describe(loaded, path)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    rows = {**_architecture(loaded.cfg.to_dict()),
            "parameters": f"{summary['n_params']:,}",
            "accuracy (all p² inputs)": percent(summary["accuracy_all_inputs"]),
            "seed": _recorded(summary["seed"]), "epochs trained": _recorded(summary["epochs_trained"]),
            "weights SHA-256": summary["weights_sha256"][:16] + " (first 16 of 64; --json)"}
    if isinstance(summary["source"], dict):
        rows["imported from"] = f"{summary['source'].get('path')} ({summary['source'].get('format')})"
    for key, value in (summary["metrics"] or {}).items():
        rows[key.replace("_", " ")] = named_figure(key, value, digits=6)
    _print_rows(f"quadlens model: {path.name}", rows.items())
    console.print(f"file: {path}", soft_wrap=True)  # whole, for copying


def _info_run(folder: Path, as_json: bool) -> None:
    """``info`` on a folder: what ``run_status`` finds there."""
    status = run_status(folder)
    if not (status["finished"] or status["interrupted"] or status["unreadable"] or status["model_config"]):
        _refuse_sweep(folder)
        tmps = abandoned_writes(folder)  # of an explain, bound or report folder, say, that nothing writes again
        left = (f" It holds {count(len(tmps), 'temporary file')} of killed writes, safe to delete: "
                f"{', '.join(tmp.name for tmp in tmps)}." if tmps else "")
        _fail(f"{folder}: no run.json, checkpoints (seed_NNNN.safetensors) or resume states; is this a folder "
              f"written by 'quadlens train' or 'quadlens reproduce'?{left}")
    if as_json:
        print(json.dumps(status, indent=2))
        return
    cfg = status["model_config"]
    rows = _architecture(cfg) if cfg else {"configs": "no run.json"}
    train_cfg = status["train_config"] or {}
    epochs = train_cfg.get("epochs")
    if train_cfg:
        rows["training"] = (f"{epochs:,} epochs, lr {train_cfg['lr']:g}, weight decay {train_cfg['weight_decay']:g}, "
                            f"train fraction {train_cfg['train_fraction']:g}, {train_cfg['dtype']}")
    finished = status["finished"]
    accuracies = sorted(a for row in finished if (a := row["test_accuracy"]) is not None)
    rows["finished"] = count(len(finished), "seed") + (f" ({seed_ranges(row['seed'] for row in finished)})"
                                                        if finished else "")
    if accuracies:
        rows["test accuracy"] = f"min {percent(accuracies[0])}, median {percent(statistics.median(accuracies))}"
    batches = [("interrupted", _stopped(batch) + (f" of {epochs:,}" if epochs else ""))
               for batch in status["interrupted"]]
    unreadable = [("unreadable", problem["error"]) for problem in status["unreadable"]]
    abandoned = [("abandoned", f"{count(len(tmps), 'temporary file')} of killed writes "
                  f"({sum(tmp['bytes'] for tmp in tmps) / 1e6:.1f} MB), safe to delete; a later write of the same file "
                  f"removes each")
                 ] if (tmps := status["abandoned_writes"]) else []
    _print_rows(f"quadlens run: {status['path']}", [*rows.items(), *batches, *unreadable, *abandoned])


def _stopped(batch: dict) -> str:
    """An interrupted batch of ``run_status``: its seeds and the epoch its resume state reached."""
    return f"seeds {seed_ranges(batch['seeds'])} at epoch {batch['epoch']:,}"


def _refuse_sweep(folder: Path) -> None:
    """Name a sweep's configurations, whose folders ``info`` describes one at a time."""
    from .sweep import configuration_names, is_sweep_summary

    try:
        summary = read_json(folder / "summary.json")
    except ValueError:
        return
    if summary and is_sweep_summary(summary):
        names = configuration_names(summary)
        _fail(f"{folder}: a sweep of {count(len(names), 'configuration')} ({', '.join(names)}); "
              f"'quadlens info {folder / names[0]}' describes one")


def _print_rows(title: str, rows: Iterable[tuple[str, str]]) -> None:
    table = _table("key", "value", title=title, show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command()
def train(
    seeds: str = typer.Option("0", help="Seeds to train: '0-150', '3' or '1,4,7-9'."),
    out: Path = typer.Option(Path("runs/train"), help="Output folder (one checkpoint per seed; resumable).",
                          callback=output_folder),
    p: int = typer.Option(59, help="Modulus."),
    d_model: int = typer.Option(128), n_heads: int = typer.Option(4), d_head: int = typer.Option(32),
    d_mlp: int = typer.Option(512),
    act_fn: str = typer.Option("relu", help="relu or gelu."),
    attention: str = typer.Option("constant", help="'constant' (pizza), 'learned' (softmax) or a rate ρ in [0, 1]."),
    constant_attention: str = typer.Option("0.5,0.5", help="Constant attention weights on positions 0,1 ('1,1' "
                                           "for the unnormalised convention)."),
    epochs: int = typer.Option(10_000), lr: float = typer.Option(1e-3), weight_decay: float = typer.Option(1.0),
    warmup_steps: int = typer.Option(10), train_fraction: float = typer.Option(0.8),
    eval_every: int = typer.Option(100), checkpoint_every: int = typer.Option(1000),
    early_stop: bool = typer.Option(False, help="Stop a batch once every seed has 100% test accuracy."),
    matmul_precision: str = typer.Option("highest", help="highest (fp32), high (TF32 on GPUs) or medium."),
    dtype: str = typer.Option("float32", help="float32 or float64."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, ...", callback=check_device),
    batch_size: Optional[int] = BATCH_SIZE,
) -> None:
    """Train one model per seed, all seeds as one batched computation, with checkpoints and resume."""
    try:
        model_cfg = ModelConfig(p=p, d_model=d_model, n_heads=n_heads, d_head=d_head, d_mlp=d_mlp, act_fn=act_fn,
                                attention_rate=parse_attention(attention),
                                constant_attention=parse_constant_attention(constant_attention))
        train_cfg = TrainConfig(epochs=epochs, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                                train_fraction=train_fraction, eval_every=eval_every,
                                checkpoint_every=checkpoint_every, early_stop=early_stop,
                                matmul_precision=matmul_precision, dtype=dtype)
        models = train_models(model_cfg, train_cfg, parse_seeds(seeds), out_dir=out, device=device,
                              batch_size=batch_size)
    except (ValueError, TypeError, CheckpointError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _interrupted(out, trained_in=out)
    table = _table("seed", "train loss", "test loss", "test acc", "epochs", title=f"trained {count(len(models), 'model')} in {out}")
    for m in models:
        metrics = m.metadata["metrics"]
        table.add_row(str(m.metadata["seed"]), *(named_figure(key, metrics[key], digits=3) for key in
                                                   ("train_loss", "test_loss", "test_accuracy")),
                      str(m.metadata["epochs_trained"]))
    console.print(table)
    console.print(f"explain and bound them all: quadlens reproduce --models {out} --out {out}-study", soft_wrap=True)


def _interrupted(out: Path, trained_in: Path | None = None) -> NoReturn:
    """Ctrl-C in a command that trains or studies: what is kept to resume from (the models in ``trained_in``, a
    training folder or a study's, and a study's rows in ``out``), and how to resume."""
    kept = []
    if trained_in is not None:
        status = run_status(trained_in)
        if status["finished"]:
            kept.append(f"seeds {seed_ranges(row['seed'] for row in status['finished'])} trained in {status['path']}")
        kept += [f"{_stopped(batch)} in {status['path']}" for batch in status["interrupted"]]
    if analysed := len(list((out / "results").glob("seed_*.json"))):  # a study's rows, one per model analysed
        kept.append(f"{count(analysed, 'model')} explained in {out / 'results'}")
    what = f"kept {'; '.join(kept)}" if kept else ("nothing was kept yet" if trained_in else
                                                    f"what was finished is kept in {out}")
    console.print(f"interrupted; {what}. Run the same command again to resume", soft_wrap=True)
    raise typer.Exit(130)


@app.command()
def explain(model: Optional[Path] = MODEL_ARG,
            out: Path = typer.Option(Path("out/explain"), help="Folder for explain.json and the figures.",
                                      callback=output_folder),
            figures: bool = typer.Option(True, help="Write the figures."),
            figure_format: str = FIGURE_FORMAT,
            min_share: float = typer.Option(0.5, min=0.0, max=1.0,
                                            help="Least key-frequency energy share for a neuron to join a cluster.")
            ) -> None:
    """Explain the MLP as a quadrature scheme: clusters, doubling, lens, quadrature error, error ladder, verdict."""
    from .explain import explain as explain_model
    from .figures import write_figures

    loaded = _load(model)
    with console.status("explaining ..."):
        explanation = explain_model(loaded, min_share=min_share)
        atomic_write_json(out / "explain.json", explanation.to_dict())
        written = write_figures(explanation, out, figure_format) if figures else []
    print_explanation(explanation)
    console.print(f"wrote {out / 'explain.json'}" + (f" and {len(written)} figures" if written else ""))


def print_explanation(explanation) -> None:
    """The terminal summary of an explanation."""
    colour = {"pizza": "green", "clock": "yellow"}.get(explanation.verdict, "red")
    console.print(f"verdict: [bold {colour}]{explanation.verdict}[/]   accuracy {percent(explanation.accuracy)}   "
                  f"gradient symmetricity {explanation.gradient_symmetricity:.3f}   "
                  f"distance irrelevance {explanation.distance_irrelevance:.3f}   ({explanation.seconds:.2f} s)")
    for reason in explanation.reasons:
        console.print(f"  [red]fails[/red] {escape(reason)}")
    if not explanation.fits_picture:
        console.print("no quadrature explanation is given for a model that does not fit the picture")
        return
    clusters = _table("k", "neurons", "W_k", "doubling R", "φ−φ' R", "β (2k)", "κ", "quad err", "equal w", "even",
                      title="clusters", caption="quadrature error: continuous sup / (W_k/3π), of the cluster's own "
                      "rule, then of equal weights and of evenly spaced nodes")
    for report in explanation.clusters:
        clusters.add_row(*report.cells())
    console.print(clusters)
    for note in [*explanation.few_angles_notes(), explanation.parity_note()]:
        if note:
            console.print(note)
    ladder = _table("level", "harmonics", "max error", "step error", "worst margin", "accuracy",
                    title="error ladder (each level replaces the MLP)", caption="max error: of the logit differences")
    for level in explanation.ladder + explanation.ablation:
        step = "-" if math.isnan(level.step_error) else f"{level.step_error:.3f}"  # no level before it
        ladder.add_row(level.level, level.harmonics_label, f"{level.max_logit_diff_error:.3f}", step,
                       f"{level.min_margin:.3f}", percent(level.accuracy))
    console.print(ladder)


@app.command()
def bound(model: Optional[Path] = MODEL_ARG,
          out: Path = typer.Option(Path("out/bound"), help="Folder for bound.json, bound.npz and the figures.",
                                    callback=output_folder),
          device: Optional[str] = typer.Option(None, help="Device for brute force (default: cuda if present).",
                                               callback=check_device),
          figures: bool = typer.Option(True, help="Write the figures."),
          figure_format: str = FIGURE_FORMAT,
          tiers: Optional[str] = typer.Option(None, help="Comma-separated tiers to run (default: every tier)."),
          brute_force: bool = typer.Option(True, "--brute-force/--no-brute-force",
                                           help="Check the tiers against brute force, O(p³·d_mlp): hours at large p. "
                                                "Without it the certified fractions still stand (proven lower bounds "
                                                "on the accuracy), but tightness and violations are not known.")
          ) -> None:
    """Sound bounds on model − explanation (L3) per input, at each cost, checked against brute force."""
    from .certify import TIERS, check_tiers
    from .certify import bound as bound_model
    from .figures import write_bound_figures
    from .partial import discard

    try:
        chosen = check_tiers(TIERS if tiers is None else tiers)
    except ValueError as error:
        _fail(f"--tiers: {error}")
    loaded = _load(model)
    if loaded.cfg.attention_kind != "constant" or loaded.cfg.act_fn != "relu":
        _fail(f"bounds need constant attention and relu; this model has "
              f"attention_rate={loaded.cfg.attention_rate}, act_fn={loaded.cfg.act_fn!r}")
    partial = out / PARTIAL
    with console.status("bounding ...") as status:
        try:
            report = bound_model(loaded, device, chosen, truth=brute_force, resume=partial,
                                 on_stage=_stage_shown(status, loaded.cfg.p))
            report.save(out)
            written = write_bound_figures(report, out, figure_format) if figures else []
        except KeyboardInterrupt:
            console.print(_kept(partial, "interrupted"), soft_wrap=True)
            raise typer.Exit(130) from None
        except OSError as error:  # a full disk, say: every write is atomic, so no good file was replaced
            _fail(_kept(partial, _named(error)))
    discard(partial)
    console.print(_bound_table(report.to_dict()))
    console.print(f"wrote {out / 'bound.json'}, {out / 'bound.npz'}" + (f" and {len(written)} figures" if written else ""))


def _stage_shown(status, p: int) -> Callable[[str], None]:
    """Each stage of the bounds on the status line as it starts, with a word on brute force's cost at large p."""
    hint = " (O(p³·d_mlp), the longest stage at this p; --no-brute-force skips it)" if p >= 400 else ""
    return lambda name: status.update(f"bounding: {name}{hint if name.startswith('brute force') else ''} ...")


def _kept(partial: Path, what: str) -> str:
    """What stopped a ``quadlens bound`` or ``report`` run, and what of it is kept to resume from."""
    kept = sorted(path.stem for path in partial.glob("*.npz"))
    return (f"{what}; kept in {partial}: {', '.join(kept)}. Run the same command again to resume" if kept
            else f"{what}, before any stage was saved")


def _known(value: float | int | None, spec: str = "") -> str:
    """A figure of ``bound.json`` for the terminal: ``-`` where it is not known (no brute force ran)."""
    return "-" if value is None else format(value, spec)


def _bound_table(summary: dict) -> Table:
    """``bound.json``'s tiers (and brute force, where it ran) as a table for the terminal."""
    brute = summary["brute_force"]
    caption = ("B/truth: median and max over inputs; viol.: inputs where B < truth" if brute else
               "no brute force: each certified fraction is a proven lower bound on the model's accuracy")
    table = _table("tier", "ops", "s", "certified", "B/truth", "max", "viol.", caption=caption,
                   title=f"bounds against the L3 explanation (p={summary['p']}, d_mlp={summary['d_mlp']})")
    for tier in summary["tiers"]:
        table.add_row(tier["name"], f"{tier['ops']:.2g}", f"{tier['seconds']:.2f}",
                      percent(tier['certified_fraction']), _known(tier["tightness_median"], ".2f"),
                      _known(tier["tightness_max"], ".2f"), _known(tier["violations"]))
    if brute:
        table.add_row("brute force", f"{brute['ops']:.2g}", f"{brute['seconds']:.2f}",
                      f"{percent(brute['accuracy'])} acc.", "1", "1", "-")
    return table


@app.command()
def reproduce(
    seeds: Optional[str] = typer.Option(None, help="Seeds: '0-150' (the default), '3' or '1,4,7-9'; with --models, "
                                                   "all its finished seeds by default."),
    out: Path = typer.Option(Path("runs/reproduce"), help="Study folder (models/, results/, tables, summary).",
                          callback=output_folder),
    models: Optional[Path] = typer.Option(None, help="Study the seeds already trained into this folder by 'quadlens "
                                                     "train' (with its own settings) instead of training: the "
                                                     "model and training options are not used."),
    p: int = typer.Option(59), d_model: int = typer.Option(128), n_heads: int = typer.Option(4),
    d_head: int = typer.Option(32), d_mlp: int = typer.Option(512),
    attention: str = typer.Option("constant", help="'constant', 'learned' or a rate ρ in [0, 1]."),
    epochs: int = typer.Option(10_000),
    device: str = typer.Option("auto", help="Where the models train and the bounds' brute force runs: auto (a GPU "
                                            "where there is one), cpu, cuda, cuda:1, ...", callback=check_device),
    batch_size: Optional[int] = BATCH_SIZE,
    bounds: bool = typer.Option(True, help="Also run every bound tier against brute force per model."),
    matmul_precision: str = typer.Option("highest", help="Training: highest (fp32), high (TF32 on GPUs) or medium."),
    workers: int = typer.Option(1, min=1, help="Local processes that explain and bound the trained models."),
) -> None:
    """The paper's many-seed study: train (or reuse) seeds, explain and bound each, tabulate and summarise."""
    from .study import run_study, statistic_rows, study_trained

    try:
        if models is not None:
            summary = study_trained(models, out, None if seeds is None else parse_seeds(seeds), with_bounds=bounds,
                                    workers=workers, device=device)
        else:
            model_cfg = ModelConfig(p=p, d_model=d_model, n_heads=n_heads, d_head=d_head, d_mlp=d_mlp,
                                    attention_rate=parse_attention(attention))
            train_cfg = TrainConfig(epochs=epochs, matmul_precision=matmul_precision)
            summary = run_study(parse_seeds(seeds or "0-150"), out, model_cfg, train_cfg, device=device,
                                batch_size=batch_size, with_bounds=bounds, workers=workers)
    except (ValueError, TypeError, CheckpointError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _interrupted(out, trained_in=models or out)  # a study folder's models are in its models/
    table = _table("figure", "mean", "median", "min", "max",
                   title=f"{count(summary['n_models'], 'model')}: {summary['verdicts']}")
    for row in statistic_rows(summary):
        table.add_row(*row)
    console.print(table)
    console.print(f"clusters per model: {summary['clusters_per_model']}; wrote {out / 'models.csv'}, "
                  f"{out / 'models.parquet'}, {out / 'summary.json'}, {out / 'distributions.png'}")


def _sweep_progress(total: int) -> Callable[[str, list[dict]], None]:
    """A line per configuration as it finishes (they take minutes each, and may run in other processes)."""
    start, finished = time.perf_counter(), []

    def done(name: str, rows: list[dict]) -> None:
        finished.append(name)
        pizzas = sum(row.get("verdict") == "pizza" for row in rows)
        console.print(f"[{len(finished)}/{total}] {name}: {len(rows)} models, {pizzas} pizzas "
                      f"({time.perf_counter() - start:.0f} s since the start)", markup=False)
    return done


@app.command()
def sweep(
    seeds: str = typer.Option("0-3", help="Seeds for every configuration."),
    out: Path = typer.Option(Path("runs/sweep"), help="Sweep folder (one study folder per configuration).",
                          callback=output_folder),
    p: str = typer.Option("59", help="Comma-separated moduli."), d_mlp: str = typer.Option("512", help="Widths."),
    attention: str = typer.Option("constant", help="Attention kinds or rates, comma-separated."),
    act_fn: str = typer.Option("relu", help="relu, gelu or both."),
    d_model: int = typer.Option(128), n_heads: int = typer.Option(4), d_head: int = typer.Option(32),
    epochs: int = typer.Option(10_000),
    workers: int = typer.Option(1, min=1, help="Local processes (configurations in parallel)."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Ray cluster address ('local' starts one here)."),
    threads_per_task: Optional[int] = typer.Option(None, min=1, help="torch threads per configuration: 1 by default "
                                                         "on the CPU (fixed, so results never depend on how tasks "
                                                         "are scheduled), every core by default with a GPU."),
    bounds: bool = typer.Option(True, help="Also bound every constant-attention relu model."),
    device: str = typer.Option("cpu", help="cpu, or a GPU (cuda, cuda:1, auto) that trains each configuration's "
                                           "seeds as one batch, configurations one after another.",
                               callback=check_device),
) -> None:
    """The study over a grid of p, width, attention rate and activation, on the CPU (locally or on Ray) or a GPU."""
    from .sweep import grid, run_sweep, sweep_rows

    try:
        base = ModelConfig(d_model=d_model, n_heads=n_heads, d_head=d_head)
        configs = grid(base, _integers("--p", p), _integers("--d-mlp", d_mlp),
                       [parse_attention(x) for x in attention.split(",")], act_fn.split(","))
        summary = run_sweep(configs, parse_seeds(seeds), out, TrainConfig(epochs=epochs), workers, ray,
                            bounds, threads_per_task, on_done=_sweep_progress(len(configs)), device=device)
    except (ValueError, TypeError, CheckpointError, ImportError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _interrupted(out)
    table = _table("configuration", "models", "verdicts", "share pizza", title=f"sweep in {out}")
    for name, models, verdicts, share_pizza in sweep_rows(summary):
        table.add_row(name, str(models), verdicts, "-" if share_pizza is None else f"{share_pizza:.2f}")
    console.print(table)


@app.command()
def report(target: Optional[Path] = typer.Argument(None, help="Checkpoint, or a folder written by 'reproduce' or "
                                                   "'sweep' (default: the bundled model)."),
           out: Path = typer.Option(Path("out/report.html"), help="The HTML file to write.", callback=output_file),
           bounds: bool = typer.Option(True, help="Include the bound tiers."),
           brute_force: bool = typer.Option(True, "--brute-force/--no-brute-force",
                                            help="Check the bounds against brute force (hours at large p).")
           ) -> None:
    """One self-contained HTML page: the explanation in plain words, tables, bounds, every figure embedded."""
    from .files import atomic_write_bytes
    from .partial import discard

    partial = None if target is not None and target.is_dir() else out.parent / f".{out.name}{PARTIAL}"
    try:
        # brute force takes hours at large p: what an interrupted model page has done is kept in ``partial``
        page = _study_page(target) if partial is None else _model_page(target, bounds, brute_force, partial)
        atomic_write_bytes(out, page.encode())
    except OSError as error:  # a full disk, say: every write is atomic, so no good file was replaced
        _fail(_named(error) if partial is None else _kept(partial, _named(error)))
    if partial is not None:
        discard(partial)
    console.print(f"wrote {out} ({len(page) / 1e6:.1f} MB)")


def _study_page(folder: Path) -> str:
    """``quadlens report``'s page for a folder written by ``reproduce`` or ``sweep``."""
    from .report import study_report

    if not (folder / "summary.json").exists():
        if not (folder / "models").is_dir() and run_status(folder)["finished"]:
            _fail(f"{folder}: checkpoints trained by 'quadlens train', not a study; 'quadlens reproduce --models "
                  f"{folder} --out STUDY' studies them, and 'quadlens report STUDY' shows the study (or report one "
                  f"checkpoint)")
        _fail(f"{folder}: no summary.json; is this a folder written by 'quadlens reproduce' or 'quadlens sweep'?")
    try:
        return study_report(folder)
    except ValueError as error:  # a summary or result file that cannot be read, named
        _fail(f"{error}; running 'quadlens reproduce' or 'quadlens sweep' on the folder again writes it anew")


def _model_page(path: Optional[Path], bounds: bool, brute_force: bool, partial: Path) -> str:
    """``quadlens report``'s page for one model (the bundled one for None), its bounds resumable from ``partial``."""
    from .certify import bound as bound_model
    from .explain import explain as explain_model
    from .report import model_report

    model = _load(path)
    with console.status("explaining ...") as status:
        explanation = explain_model(model)
        bounded = None
        if bounds and model.cfg.attention_kind == "constant" and model.cfg.act_fn == "relu":
            try:
                bounded = bound_model(model, truth=brute_force, resume=partial,
                                      on_stage=_stage_shown(status, model.cfg.p))
            except KeyboardInterrupt:
                console.print(_kept(partial, "interrupted"), soft_wrap=True)
                raise typer.Exit(130) from None
        status.update("writing the page ...")
        return model_report((path or bundled_model_path()).name, explanation, bounded, model.cfg.to_dict())


@app.command("import")
def import_(src: Path = typer.Argument(..., help="Foreign checkpoint: .pt state dict or .safetensors."),
            format: str = typer.Option(..., "--format", help="transformer-lens or grokking."),
            config: Optional[Path] = typer.Option(None, help="Its JSON config."),
            out: Path = typer.Option(Path("out/imported"), help="Folder for the quadlens checkpoint.",
                                    callback=output_folder),
            name: Optional[str] = typer.Option(None, help="File name (default: the source's stem)."),
            seed: Optional[int] = typer.Option(None, min=0, max=2**63 - 1,
                                               help="A seed number to record: the file is then seed_NNNN.safetensors, "
                                                    "and 'quadlens reproduce --models OUT' studies the folder's "
                                                    "seeds.")) -> None:
    """Convert a TransformerLens or grokking-style checkpoint into a quadlens checkpoint (identical logits)."""
    from .checkpoint import save_model
    from .importers import ImportFormatError, import_model
    from .train import seed_path

    if seed is not None and name is not None:
        _fail("give --name or --seed, not both: with --seed the file is named seed_NNNN.safetensors")
    try:
        model = import_model(src, format, config)
    except ImportFormatError as e:
        _fail(str(e))
    path = out / f"{name or src.stem}.safetensors" if seed is None else seed_path(out, seed)
    save_model(path, model.cfg, {k: v.detach() for k, v in model.params().items()},
               source={"path": str(src), "format": format, "config": str(config) if config else None},
               **({} if seed is None else {"seed": seed}))
    console.print(f"imported {src} ({format}) as {path}: p={model.cfg.p}, attention {model.cfg.attention_kind} "
                  f"(ρ={model.cfg.attention_rate}), accuracy {percent(accuracy(model))}")


@app.command()
def export(model: Optional[Path] = MODEL_ARG,
           out: Path = typer.Option(Path("out/export/model_tl.safetensors"), help="Output state dict (.safetensors).",
                                     callback=safetensors_file),
           format: str = typer.Option("transformer-lens", "--format", help="transformer-lens.")) -> None:
    """Write a model as a TransformerLens HookedTransformer state dict, with its config beside it as JSON."""
    from safetensors.torch import save

    from .files import atomic_write_bytes
    from .importers import to_transformer_lens

    if format != "transformer-lens":
        _fail(f"export format must be 'transformer-lens', got {format!r}")
    try:
        state, tl_config = to_transformer_lens(_load(model))
    except ValueError as e:
        _fail(str(e))
    atomic_write_bytes(out, save({k: v.contiguous() for k, v in state.items()}))  # never half a file in its place
    atomic_write_json(out.with_suffix(".json"), tl_config)
    console.print(f"wrote {out} and {out.with_suffix('.json')}")


@app.command()
def version() -> None:
    """Print the quadlens version."""
    print(__version__)


if __name__ == "__main__":
    app()
