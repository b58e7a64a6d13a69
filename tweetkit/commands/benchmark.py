"""tweetkit benchmark: fine-tune and score a model on every task of a suite, over seeds,
beside the published rows."""

from __future__ import annotations

import os
import signal
import sys
import time

import click

from tweetkit.options import QUIET, device_option, output_option
from tweetkit.records import emit_json
from tweetkit.reports import log_for


class Progress:
    """The live view on stderr (units done and running, ETA) and one JSON line per
    finished unit on stdout."""

    def __init__(self, to_run: int, quiet: bool):
        self.running: list[str] = []
        self.view = None
        if not quiet:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            # ETA from every unit finished so far, not rich's last 30 s: a unit takes minutes.
            self.view = Progress(TextColumn("units"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.description}"),
                                 console=Console(file=sys.stderr), speed_estimate_period=7 * 24 * 3600)  # fmt: skip
            self.bar = self.view.add_task("", total=to_run)
            self.view.advance(self.bar, 0)  # a first sample, so that the ETA counts from the start
            self.view.start()

    def _describe(self) -> None:
        if self.view:
            self.view.update(self.bar, description="running: " + ", ".join(self.running))

    def started(self, unit) -> None:
        self.running.append(unit.name)
        self._describe()

    def finished(self, unit, result: dict, reused: bool = False) -> None:
        if unit.name in self.running:
            self.running.remove(unit.name)
        official = result["metrics"].get(unit.task.metric)
        line = {"task": unit.task.name, "seed": unit.seed, "metric": unit.task.metric, "value": official,
                "seconds": result["seconds"], "reused": reused, "directory": unit.directory}  # fmt: skip
        emit_json(line)
        if self.view and not reused:
            self.view.advance(self.bar)
            self._describe()

    def stop(self) -> None:
        if self.view:
            self.view.stop()


def model_name(model: str) -> str:
    """A directory's name, or its parent's when it is only called 'model' (a packaged model)."""
    path = os.path.normpath(os.path.abspath(model)) if model != "linear" else model
    base = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if base == "model" else base


def parse_int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter("expected integers, e.g. 1,2,3", param_hint=flag) from None
    if not values:
        raise click.BadParameter("expected at least one", param_hint=flag)
    return values


@click.command(
    "benchmark",
    epilog="""\b
Suites shipped: tweeteval (7 tasks and ALL), bertweet (the BERTweet paper's six), covid19.
Examples:
  tweetkit benchmark tweeteval --model mlm/ --data ../shared/data -o bench-tweeteval/
  tweetkit benchmark tweeteval --model linear --data ../shared/data -o bench-linear/
  tweetkit benchmark bertweet --model mlm/ --data ../shared/data --seeds 1,2,3 --workers 2 -o bench-bertweet/
  tweetkit benchmark tweeteval --model mlm/ --data data/ --tasks irony,stance --train-limit 500 --epochs 1 -o quick/
  tweetkit benchmark my-suite.toml --model mlm/ --data my-data/ -o mine/   # a suite of your own
  tweetkit benchmark tweeteval ... -o bench-tweeteval/   # again: finished units are kept, the rest run""",
)
@click.argument("suite_name", metavar="SUITE")
@click.option("--model", required=True, help="A pretrained model directory, or 'linear' for the linear baseline row.")
@click.option(
    "--data", "data_dir", required=True, type=click.Path(file_okay=False), help="Data root, laid out as ../shared/data."
)
@output_option("Output directory (reused to resume).")
@click.option("--name", help="The model's name in the table and picture [default: its directory's name].")
@click.option("--tasks", help="Comma-separated tasks or groups of the suite [default: all].")
@click.option("--seeds", default="1", show_default=True, help="Comma-separated fine-tuning seeds.")
@click.option("--train-limit", type=click.IntRange(min=1), help="Train on the first N lines of each training split.")
@click.option("--epochs", type=click.FloatRange(min=0), help="Override every task's epochs.")
@click.option("--lr", type=click.FloatRange(min=0), help="Override every task's learning rate.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Override every task's batch size.")
@click.option("--max-length", type=click.IntRange(min=8), help="Override every task's max length.")
@click.option("--patience", type=click.IntRange(min=0), help="Override every task's early-stopping patience.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    help="Fine-tuning precision [default: finetune's, fp32]; bf16 autocast is fast on CPUs with native bf16.",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Units run in parallel.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="CPU threads in all [default: as finetune's]; each worker gets its share.",
)
@device_option
@click.option(
    "--keep-models",
    is_flag=True,
    help="Keep each unit's fine-tuned model (deleted after its test predictions otherwise).",
)
@QUIET
def command(
    suite_name,
    model,
    name,
    data_dir,
    output,
    tasks,
    seeds,
    train_limit,
    workers,
    threads,
    device,
    keep_models,
    quiet,
    **tuning,
):
    """Fine-tune MODEL on every task of SUITE (a shipped suite's name or a .toml file) for
    each seed with `tweetkit finetune`, predict and score each test split with `tweetkit
    predict` and `tweetkit evaluate`, and write OUTPUT/results.json, results.md (the
    official metric of each task, mean ± std, beside the published rows) and
    results.png/.svg.  Each (task, seed) is a unit in OUTPUT/units/TASK/seed-N: a rerun
    skips finished ones, reruns those whose settings changed; Ctrl-C keeps them.  stdout:
    one JSON line per finished unit, then a summary line."""
    from tweetkit import threads as thread_settings
    from tweetkit.benchmark import report
    from tweetkit.benchmark import suite as suites
    from tweetkit.benchmark import units as work
    from tweetkit.errors import ConfigError

    suite = suites.load(suite_name)
    chosen = suites.select_tasks(suite, [t.strip() for t in tasks.split(",")] if tasks else None)
    seed_list = parse_int_list(seeds, "--seeds")
    log = log_for("benchmark", quiet)
    if model in ("linear", "tfidf"):
        model = "linear"
        if len(seed_list) > 1:
            log(f"--model linear is deterministic: one run (seed {seed_list[0]}) instead of {len(seed_list)}")
            seed_list = seed_list[:1]
    elif not os.path.isdir(model):
        raise ConfigError(f"--model {model}: no such directory")
    work.check_data(chosen, data_dir)
    os.makedirs(output, exist_ok=True)
    units = work.plan(suite, chosen, seed_list, model, data_dir, output, {"train_limit": train_limit, "tuning": tuning})
    total_threads = thread_settings.resolve(threads)[0]
    runtime = work.Runtime(threads=max(1, total_threads // workers), device=device, keep_models=keep_models)
    started = time.time()
    results = run(units, runtime, workers, quiet, log, output)
    about = {"model": model, "model_name": name or model_name(model), "data": os.path.abspath(data_dir),
             "train_limit": train_limit, "overrides": {k: v for k, v in tuning.items() if v is not None},
             "seconds_this_run": round(time.time() - started, 1)}  # fmt: skip
    summary = report.summarize(suite, results, seed_list, output, about)
    paths = report.write(summary, output)
    log(f"wrote {', '.join(paths)}")
    line = {"summary": {r["name"]: {"mean": r["mean"], "std": r["std"]} for r in summary["rows"]}, "results": paths[0]}
    if "aggregate" in summary:
        line["summary"][summary["aggregate"]["name"]] = {k: summary["aggregate"][k] for k in ("mean", "std")}
    emit_json(line)


def run(units, runtime, workers: int, quiet: bool, log, output: str) -> dict:
    """Every unit's result: finished ones read back, the others run."""
    from tweetkit.benchmark import units as work
    from tweetkit.errors import Interrupted

    done = {u.name: work.finished(u) for u in units}
    to_run = [u for u in units if done[u.name] is None]
    log(f"{len(units) - len(to_run)} of {len(units)} units finished already; {len(to_run)} to run, "
        f"{workers} at a time with {runtime.threads} thread(s) each")  # fmt: skip
    progress = Progress(len(to_run), quiet)
    for unit in units:
        if done[unit.name] is not None:
            progress.finished(unit, done[unit.name], reused=True)
    previous = signal.signal(signal.SIGTERM, _stop_as_ctrl_c)  # a scheduler's stop keeps finished units too
    try:
        results = work.run_all(to_run, runtime, workers, progress)
    except KeyboardInterrupt:
        progress.stop()
        kept = sum(1 for u in units if work.finished(u) is not None)
        raise Interrupted(f"({kept} of {len(units)} units finished and kept in {output}; rerun to go on)") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    progress.stop()
    return {**{name: result for name, result in done.items() if result is not None}, **results}


def _stop_as_ctrl_c(signum, frame):
    raise KeyboardInterrupt
