"""Units of a benchmark: one (task, seed) each, run through the `tweetkit` commands
themselves (finetune, predict, evaluate as subprocesses), so there is no second
training path.  A unit's directory holds its settings; `unit.json`, written last and
atomically, marks it finished.  A rerun skips finished units whose settings match and
runs again those whose settings changed."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from tweetkit.benchmark.suite import Suite, Task
from tweetkit.errors import ConfigError
from tweetkit.files import sha256_of, write_atomically

UNIT_FILE = "unit.json"
SETTINGS_FILE = "settings.json"
PREDICTIONS = "test.predictions.jsonl"


@dataclasses.dataclass(frozen=True)
class Unit:
    task: Task
    seed: int
    directory: str
    settings: dict
    views: tuple[Task, ...]  # tasks that score this unit's predictions again

    @property
    def name(self) -> str:
        return f"{self.task.name}/seed-{self.seed}"


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How units run, not what they compute: none of it is in a unit's settings."""

    threads: int
    device: str
    keep_models: bool


# --- data ----------------------------------------------------------------------------------


def required_fields(task: Task) -> tuple[str, str]:
    return ("tokens", "tags") if task.kind == "tagging" else ("text", "label")


def check_data(tasks: list[Task], data: str) -> None:
    """Every file the tasks need exists and its first line is a record with the task's
    fields: a missing or malformed file is one line naming it, before anything trains."""
    if not os.path.isdir(data):
        raise ConfigError(f"--data {data}: no such directory")
    for task in tasks:
        for path in filter(None, (task.train, task.validation, task.test)):
            _check_first_line(os.path.join(data, path), required_fields(task))
        if task.train_exclude_ids and not os.path.isfile(os.path.join(data, task.train_exclude_ids)):
            raise ConfigError(f"{os.path.join(data, task.train_exclude_ids)}: no such file (task {task.name})")


def _check_first_line(path: str, fields: tuple[str, ...]) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file")
    with open(path, "rb") as handle:
        first = handle.readline()
    try:
        record = json.loads(first)
    except ValueError:
        raise ConfigError(f"{path}:1: not a JSON object") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path}:1: not a JSON object")
    missing = [f for f in fields if f not in record]
    if missing:
        raise ConfigError(f"{path}:1: no field '{missing[0]}' (this task needs {', '.join(fields)})")


def prepare_train(task: Task, data: str, output: str, train_limit: int | None) -> str:
    """The training file a task uses: the suite's, without the excluded ids, cut to the
    first `train_limit` lines (deterministic), written once under OUTPUT/data/."""
    source = os.path.join(data, task.train)
    if not task.train_exclude_ids and not train_limit:
        return source
    target = os.path.join(output, "data", task.name, f"train.n{train_limit or 'all'}.jsonl")
    excluded = set()
    if task.train_exclude_ids:
        with open(os.path.join(data, task.train_exclude_ids), encoding="utf-8") as handle:
            excluded = {line.strip() for line in handle if line.strip()}
    kept = []
    with open(source, encoding="utf-8") as handle:
        for line in handle:
            if excluded and str(json.loads(line).get("id")) in excluded:
                continue
            kept.append(line)
            if train_limit and len(kept) >= train_limit:
                break
    os.makedirs(os.path.dirname(target), exist_ok=True)
    write_atomically(target, "".join(kept))
    return target


def model_fingerprint(model: str) -> object:
    """What tells one model directory's contents from another's, cheaply: its files'
    names, sizes and modification times (a retrained model in the same place differs)."""
    if model == "linear" or not os.path.isdir(model):
        return model
    return sorted(
        (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns) for entry in os.scandir(model) if entry.is_file()
    )


# --- planning ------------------------------------------------------------------------------


def plan(
    suite: Suite, tasks: list[Task], seeds: list[int], model: str, data: str, output: str, options: dict
) -> list[Unit]:
    """The units of the chosen tasks and seeds; `options` holds train_limit and the tuning
    overrides given as flags (they win over the suite's)."""
    units = []
    overrides = {k: v for k, v in options["tuning"].items() if v is not None}
    for task in tasks:
        train = prepare_train(task, data, output, options["train_limit"])
        paths = {"train": train, "validation": task.validation and os.path.join(data, task.validation),
                 "test": os.path.join(data, task.test)}  # fmt: skip
        files = {split: {"path": os.path.abspath(p), "sha256": sha256_of(p)} for split, p in paths.items() if p}
        views = tuple(t for t in suite.tasks if t.predictions_of == task.name)
        for seed in seeds:
            settings = {
                "task": task.name, "kind": task.kind, "seed": seed,
                "model": os.path.abspath(model) if model != "linear" else "linear",
                "model_files": model_fingerprint(model), "data": files, "train_limit": options["train_limit"],
                "tuning": {**task.tuning, **overrides}, "metric": task.metric, "select": selection_metric(task),
                "positive_label": task.positive_label, "label_map": task.label_map,
                "views": {v.name: v.label_map for v in views},
            }  # fmt: skip
            directory = os.path.join(output, "units", task.name, f"seed-{seed}")
            units.append(Unit(task, seed, directory, json.loads(json.dumps(settings)), views))
    return units


def selection_metric(task: Task) -> str | None:
    """The validation metric finetune selects the epoch on: the suite's `select`, else the
    task's official metric when it is its own (a pooled one is finetune's default)."""
    if task.select:
        return task.select
    return None if task.group else task.metric


# --- one unit ------------------------------------------------------------------------------


class UnitFailed(Exception):
    pass


class Stopped(Exception):
    """The benchmark is stopping (Ctrl-C): the unit is left unfinished, to resume."""


class Processes:
    """The running subprocesses of all units, so that Ctrl-C can reach each once."""

    def __init__(self):
        self.lock, self.running, self.stopping = threading.Lock(), set(), threading.Event()

    def call(self, args: list[str], stdout: str, log: str, unit: Unit) -> None:
        with self.lock:
            if self.stopping.is_set():
                raise Stopped()
            with open(stdout, "wb") as out, open(log, "ab") as err:
                # Its own session: a terminal's Ctrl-C reaches the benchmark, which passes it on once.
                process = subprocess.Popen(args, stdout=out, stderr=err, start_new_session=True)
            self.running.add(process)
        code = process.wait()
        with self.lock:
            self.running.discard(process)
        if self.stopping.is_set():
            raise Stopped()
        if code:
            raise UnitFailed(
                f"unit {unit.name}: `tweetkit {args[3]}` failed (exit {code}): {last_line(log)} (log: {log})"
            )

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
            for process in self.running:
                try:
                    process.send_signal(signal.SIGINT)  # finetune saves its epoch checkpoint and exits
                except ProcessLookupError:
                    pass


def last_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else "no message"


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def finished(unit: Unit) -> dict | None:
    """The result of a finished unit with these settings, else None."""
    result = read_json(os.path.join(unit.directory, UNIT_FILE))
    return result if result and result.get("settings") == unit.settings else None


def run_unit(unit: Unit, runtime: Runtime, processes: Processes) -> dict:
    """Fine-tune, predict the test split, score it; returns the unit's result (unit.json)."""
    started = time.time()
    if read_json(os.path.join(unit.directory, SETTINGS_FILE)) != unit.settings:
        shutil.rmtree(unit.directory, ignore_errors=True)  # another unit's files: start afresh
    os.makedirs(unit.directory, exist_ok=True)
    write_atomically(os.path.join(unit.directory, SETTINGS_FILE), json.dumps(unit.settings, indent=2))
    path = lambda name: os.path.join(unit.directory, name)  # noqa: E731
    model_dir = path("model")
    processes.call(finetune_args(unit, runtime, model_dir), path("finetune.jsonl"), path("finetune.log"), unit)
    predict = tweetkit("predict", "--model", model_dir, "--field", required_fields(unit.task)[0],
                       unit.settings["data"]["test"]["path"], "-o", path(PREDICTIONS + ".tmp"),
                       "--threads", runtime.threads, "--device", runtime.device, "-q")  # fmt: skip
    processes.call(predict, os.devnull, path("predict.log"), unit)
    os.replace(path(PREDICTIONS + ".tmp"), path(PREDICTIONS))
    metrics = evaluate(unit, unit.task.label_map, "test.metrics.json", processes)
    views = {
        view.name: evaluate(unit, view.label_map, f"test.{view.name}.metrics.json", processes) for view in unit.views
    }
    if not runtime.keep_models:
        shutil.rmtree(model_dir, ignore_errors=True)
    result = {"task": unit.task.name, "seed": unit.seed, "metrics": metrics, "views": views,
              "seconds": round(time.time() - started, 1), "settings": unit.settings}  # fmt: skip
    write_atomically(path(UNIT_FILE), json.dumps(result, indent=2))  # last: it marks the unit finished
    return result


def tweetkit(*args) -> list[str]:
    return [sys.executable, "-m", "tweetkit", *map(str, args)]


def finetune_args(unit: Unit, runtime: Runtime, model_dir: str) -> list[str]:
    settings, task = unit.settings, unit.task
    data = settings["data"]
    args = tweetkit("finetune", "--model", settings["model"], "--task", task.kind, "--train", data["train"]["path"],
                    "-o", model_dir, "-q")  # fmt: skip
    if "validation" in data:
        args += ["--validation", data["validation"]["path"]]
    if task.positive_label:
        args += ["--positive-label", task.positive_label]
    if task.label_map:
        args += ["--label-map", task.label_map]
    if settings["model"] == "linear":
        return args + ["--overwrite"]  # deterministic and quick: nothing to resume
    tuning = settings["tuning"]
    for flag in ("epochs", "lr", "batch_size", "max_length", "patience"):
        if flag in tuning:
            args += [f"--{flag.replace('_', '-')}", str(tuning[flag])]
    if "precision" in tuning:  # a command-line override only: it changes results, so it is in the settings
        args += ["--precision", tuning["precision"]]
    if settings["select"] and "validation" in data:
        args += ["--metric", settings["select"]]
    # --resume continues an epoch checkpoint left by Ctrl-C (the settings are the same, or the directory would be gone).
    return args + ["--seed", str(unit.seed), "--threads", str(runtime.threads), "--device", runtime.device, "--resume"]


def evaluate(unit: Unit, label_map: str | None, name: str, processes: Processes) -> dict:
    """`tweetkit evaluate` on the unit's test predictions: its scalar figures (all of them in OUTPUT/units/.../NAME)."""
    target = os.path.join(unit.directory, name)
    args = tweetkit("evaluate", os.path.join(unit.directory, PREDICTIONS), "-q")
    if unit.task.positive_label:
        args += ["--positive-label", unit.task.positive_label]
    if label_map:
        args += ["--label-map", label_map]
    processes.call(args, target + ".tmp", os.path.join(unit.directory, "evaluate.log"), unit)
    os.replace(target + ".tmp", target)
    scores = read_json(target) or {}
    return {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# --- many units ----------------------------------------------------------------------------


def run_all(units: list[Unit], runtime: Runtime, workers: int, progress) -> dict[str, dict]:
    """Run the units on `workers` threads (each driving its own subprocesses); returns the
    results by unit name.  Ctrl-C stops the running units (finetune keeps a checkpoint)
    and raises KeyboardInterrupt; a failed unit stops the others and raises ConfigError."""
    pending, results, failures = list(units), {}, []
    lock, processes = threading.Lock(), Processes()

    def work() -> None:
        while True:
            with lock:
                if not pending or failures or processes.stopping.is_set():
                    return
                unit = pending.pop(0)
            progress.started(unit)
            try:
                result = run_unit(unit, runtime, processes)
            except Stopped:
                return
            except (UnitFailed, OSError) as exc:
                with lock:
                    failures.append(str(exc))
                processes.stop()
                return
            with lock:
                results[unit.name] = result
            progress.finished(unit, result)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, min(workers, len(units))))]
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.2)
    except KeyboardInterrupt:
        processes.stop()
        for thread in threads:
            thread.join()
        raise
    if failures:
        raise ConfigError(failures[0])
    return results
