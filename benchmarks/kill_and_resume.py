"""Kill quadlens with SIGKILL at random moments, run the same command again until it finishes, and compare what it
wrote with an uninterrupted run's files.

    python benchmarks/kill_and_resume.py                        # train, bound, study, sweep, report: 8 kills each
    python benchmarks/kill_and_resume.py --kills 40 --json benchmarks/results/kill_and_resume.json
    python benchmarks/kill_and_resume.py --only report          # some of the commands

The suite interrupts runs by raising an exception inside them (tests/test_train.py, tests/test_partial.py), which
lets ``finally`` blocks and the temporary files' clean-up run. SIGKILL (the out-of-memory killer, a pre-empted
cluster job, a lost session) runs nothing: whatever the process was writing stays as it was. Each command runs once
uninterrupted, then in "lives": a fresh folder in which the same command runs again and again, each run killed at
a moment drawn uniformly over the uninterrupted run's wall time, until one finishes first. Lives follow one another
until ``--kills`` kills in all. A life passes when its last run exits 0 and every result file holds what the
uninterrupted run's does (weights bit for bit, every number but the timings), no partial results are left behind,
and nothing else is: the temporary files of writes that a kill cut short count as left behind. The processes a
killed run started (a ``--workers`` pool) are counted when still running 5 s after the kill (Linux: read from
/proc).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
from runlog import append_run

import quadlens

ROOT = Path(__file__).resolve().parent
TIMINGS = ("seconds", "speedup_vs_brute_force")  # the endings of the keys that hold a timing
TRAIN = ["train", "--p", "23", "--d-model", "32", "--d-mlp", "64", "--epochs", "1500", "--checkpoint-every", "50",
         "--eval-every", "50", "--seeds", "0-3", "--batch-size", "2"]


def without_timings(value):
    """``value`` (parsed JSON) with every field that holds a timing dropped, so that two runs' files compare."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not k.endswith(TIMINGS)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def html_without_timings(page: str) -> list[list[str]]:
    """A report page's tables (rows of cells) without their "seconds" columns, and the rest of the page as one
    row, so that two pages compare: the figures are embedded byte for byte, and only the timings differ."""
    tables = []
    for table in re.findall(r"<table.*?</table>", page, re.S):
        rows = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S) for row in re.findall(r"<tr.*?</tr>", table, re.S)]
        timed = [i for i, name in enumerate(rows[0]) if name == "seconds"] if rows else []
        tables += [[cell for i, cell in enumerate(row) if i not in timed] for row in rows]
    return tables + [[re.sub(r"<table.*?</table>", "", page, flags=re.S)]]


def differences(clean: Path, resumed: Path) -> list[str]:
    """Every way the files under ``resumed`` differ from those under ``clean``: missing or extra files, weights,
    arrays, JSON fields and report pages other than their timings. PNG figures and the study's parquet copy of its
    CSV are not compared (they embed no result the JSON and CSV do not hold)."""
    names = {str(p.relative_to(clean)) for p in clean.rglob("*") if p.is_file()}
    found = {str(p.relative_to(resumed)) for p in resumed.rglob("*") if p.is_file()}
    problems = [f"left behind: {name}" for name in sorted(found - names)]
    problems += [f"missing: {name}" for name in sorted(names - found)]
    for name in sorted(names & found):
        a, b = clean / name, resumed / name
        if name.endswith(".safetensors"):
            same = quadlens.load_model(a).fingerprint() == quadlens.load_model(b).fingerprint()
        elif name.endswith(".npz"):
            with np.load(a) as x, np.load(b) as y:
                same = sorted(x.files) == sorted(y.files) and all(np.array_equal(x[k], y[k]) for k in x.files)
        elif name.endswith(".json"):
            same = without_timings(json.loads(a.read_text())) == without_timings(json.loads(b.read_text()))
        elif name.endswith(".csv"):
            same = _csv_without_timings(a) == _csv_without_timings(b)
        elif name.endswith(".html"):
            same = html_without_timings(a.read_text()) == html_without_timings(b.read_text())
        else:
            continue
        if not same:
            problems.append(f"differs: {name}")
    return problems


def _csv_without_timings(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, name in enumerate(rows[0]) if not name.endswith(TIMINGS)]
    return [[row[i] for i in keep] for row in rows]


def command(args: list[str], out: Path) -> list[str]:
    """``quadlens ARGS --out OUT``, or, for ``report``, which writes one file, ``--out OUT/report.html``."""
    return ["quadlens", *args, "--out", str(out / "report.html" if args[0] == "report" else out)]


def run(args: list[str], out: Path) -> float:
    """Run ``quadlens ARGS --out OUT`` to the end; its wall time."""
    start = time.perf_counter()
    subprocess.run(command(args, out), check=True, capture_output=True)
    return time.perf_counter() - start


def run_killed(args: list[str], out: Path, span: float, rng: np.random.Generator) -> dict:
    """Run ``quadlens ARGS --out OUT`` again and again, killing each run at a moment uniform in [0, span) seconds
    after its start, until one finishes first: each kill's moment and the temporary files it left, and the
    finishing run's exit code."""
    kills = []
    while True:
        process = subprocess.Popen(command(args, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        at = float(rng.uniform(0, span))
        try:
            _, stderr = process.communicate(timeout=at)
            return {"kills": kills, "exit_code": process.returncode, "stderr": stderr.decode()[-2000:]}
        except subprocess.TimeoutExpired:
            children = _children(process.pid)
            process.kill()  # SIGKILL
            process.communicate()
            files = [str(p.relative_to(out)) for p in out.rglob("*.tmp")] if out.exists() else []
            kills.append({"at": round(at, 2), "temporary": sorted(files), "children": len(children),
                          "children_left_after_5_s": _left(children, 5.0)})


def _children(pid: int) -> list[int]:
    """The processes that ``pid`` started (a ``--workers`` pool's, and its resource tracker)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):  # a process that ended meanwhile
            continue
    return children


def _left(pids: list[int], seconds: float) -> list[int]:
    """Those of ``pids`` still running after ``seconds`` (zombies have ended), killed then so as not to slow what
    follows."""
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + seconds
    while any(map(running, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in pids if running(pid)]
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    return left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=8, help="kills per command, at the least")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/quadlens-kill-and-resume"))
    parser.add_argument("--json", type=Path, help="append this run's results to a runs file")
    parser.add_argument("--only", nargs="+", help="the commands to kill, by their first word (train, bound, "
                                                  "reproduce, sweep, report); 'reproduce' needs 'train'")
    options = parser.parse_args()
    rng = np.random.default_rng(options.seed)
    subprocess.run(["rm", "-rf", str(options.work)], check=True)
    jobs = {"train": TRAIN,
            "bound": ["bound", str(ROOT / "models" / "pizza_p227_seed0.safetensors")],
            "reproduce --models": ["reproduce", "--models", str(options.work / "train" / "clean")],
            "sweep --workers 2": ["sweep", "--p", "23,29", "--d-mlp", "64", "--d-model", "32", "--seeds", "0-1",
                                  "--epochs", "1500", "--workers", "2"],
            "report": ["report", str(ROOT / "models" / "pizza_p113_seed0.safetensors")]}
    if options.only:
        jobs = {name: args for name, args in jobs.items() if name.split()[0] in options.only}
    results = []
    for name, args in jobs.items():
        folder = options.work / name.split()[0]
        seconds = run(args, folder / "clean")
        lives = []
        while sum(len(life["kills"]) for life in lives) < options.kills:
            out = folder / f"life_{len(lives)}"
            life = run_killed(args, out, seconds, rng)
            problems = differences(folder / "clean", out)
            if life["exit_code"] != 0:
                problems.append(f"exit code {life['exit_code']}: {life['stderr']}")
            lives.append({**life, "problems": problems})
        results.append({"command": name, "clean_seconds": round(seconds, 2), "lives": len(lives),
                        "kills": sum(len(life["kills"]) for life in lives),
                        "temporary_files_seen": sum(len(k["temporary"]) for life in lives for k in life["kills"]),
                        "children_left_after_5_s": sum(len(k["children_left_after_5_s"]) for life in lives
                                                       for k in life["kills"]),
                        "problems": [p for life in lives for p in life["problems"]], "each_life": lives})
        r = results[-1]
        print(f"{name}: {seconds:.1f} s clean; {r['kills']} kills in {r['lives']} lives, {r['temporary_files_seen']} "
              f"temporary files seen after kills, {r['children_left_after_5_s']} child processes still running 5 s "
              f"after; " + ("; ".join(r["problems"]) or "every life's files identical"), flush=True)
    if options.json:
        append_run(options.json, kills=options.kills, seed=options.seed, results=results)


if __name__ == "__main__":
    main()
