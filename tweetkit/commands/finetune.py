"""tweetkit finetune: classification, multi-label, regression and tagging on the shared training core."""

from __future__ import annotations

import json
import math
import os

import click

from tweetkit import kinds
from tweetkit.options import (
    ON_ERROR,
    QUIET,
    config_options,
    field_option,
    label_map_option,
    log_for,
    output_option,
    threads_option,
    train_options,
)
from tweetkit.sweep import DEFAULT_SPACE, SweepSettings, check_range, default_storage, parse_space, run_study

TRAIN_FLAGS = [
    "batch_size", "epochs", "max_steps", "lr", "weight_decay", "betas", "eps", "warmup_ratio", "precision", "keep_checkpoints",
    "resume", "overwrite", "seed", "device", "dist_timeout", "compile",
]  # fmt: skip


# --- data ------------------------------------------------------------------------------


def read_examples(path: str, kind: str, fields: dict, on_error: str) -> list[tuple]:
    """(input, label) pairs; bad lines and labels follow --on-error with file:line messages."""
    from tweetkit.io import StreamOptions, consume_records

    task = kinds.get(kind)
    source, gold = fields[task.input_field], fields[task.gold_field]
    options = StreamOptions(inputs=[path], on_error=on_error, quiet=True)
    input_type = list if task.input_field == "tokens" else str
    records = consume_records(
        "finetune", options, source, input_type, [gold], lambda record: task.check(record, source, gold)
    )
    return [(r[source], r[gold]) for r in records]


def label_names_of(kind: str, examples: list[tuple]) -> list[str] | None:
    return kinds.get(kind).label_names([label for _, label in examples])


def check_metric(kind: str, metric: str, examples: list[tuple], positive_label) -> None:
    """Refuse an unknown --metric before any training: the names are those the task's
    scorer returns, found by scoring the validation labels against themselves."""
    from tweetkit.errors import ConfigError

    gold = [label for _, label in examples[:4]]
    scores = kinds.get(kind).score(gold, gold, None, positive_label)
    names = sorted(k for k, v in scores.items() if isinstance(v, float))
    if metric not in names:
        raise ConfigError(f"--metric {metric}: not one of {', '.join(names)} for --task {kind}")


# --- one run ---------------------------------------------------------------------------


def run_settings(job: dict, train: dict, seed: int) -> dict:
    """What makes two fine-tuning runs the same run (compared on --resume)."""
    keys = (
        "model",
        "task",
        "labels",
        "max_length",
        "metric",
        "positive_label",
        "threshold",
        "patience",
        "train_path",
        "validation_path",
        "fields",
    )
    # where and how it runs, not what it computes
    where = ("resume", "overwrite", "keep_checkpoints", "device", "dist_timeout", "compile", "seed")
    how = {k: v for k, v in train.items() if k not in where}
    mapped = {"label_map": job["label_map"]} if job.get("label_map") else {}  # absent when unused: older runs resume
    return {"seed": seed, **{k: job[k] for k in keys}, **mapped, **how}


def model_and_task(job: dict, train: dict, seed: int):
    """(model, tokenizer, task): the pretrained encoder with its kind's new head, and its data."""
    import torch

    from tweetkit.modeling import load_pretrained, load_tokenizer
    from tweetkit.tasks.supervised import SequenceTask, TaggingTask

    kind, labels = kinds.get(job["task"]), job["labels"]
    tokenizer = load_tokenizer(job["model"], tagging=kind.name == "tagging")
    torch.manual_seed(seed)  # the new head's initialisation
    head = (
        dict(num_labels=1)
        if labels is None
        else dict(
            num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
        )
    )
    if kind.problem_type:
        head["problem_type"] = kind.problem_type
    model = load_pretrained(kind.head(), job["model"], attn_implementation="sdpa", **head)
    common = (job["train"], job["validation"], labels, job["max_length"], train["batch_size"], seed)
    if kind.name == "tagging":
        task = TaggingTask(tokenizer, *common)
    else:
        task = SequenceTask(kind.name, tokenizer, *common, job["positive_label"], job["threshold"])
    model.config.max_length_trained = job["max_length"]
    return model, tokenizer, task


def finetune_once(job: dict, train: dict, seed: int, output: str, log, report=None) -> dict:
    """Fine-tune one model with one seed; save the best epoch's model to `output`.
    `report(epoch, value, final)` sees each validation value (a sweep's pruner)."""
    from tweetkit.train import distributed
    from tweetkit.train.best import BestKeeper
    from tweetkit.train.config import TrainConfig
    from tweetkit.train.loop import train as train_loop

    finished = finished_summary(output, job, train, seed) if train["resume"] else None
    if finished is not None:
        log(f"{output}: this run finished already; nothing to resume")
        return finished
    model, tokenizer, task = model_and_task(job, train, seed)
    steps_per_epoch = max(1, task.num_examples() // train["batch_size"])
    every_epoch = dict(eval_every=steps_per_epoch, log_every=steps_per_epoch, save_every=steps_per_epoch)
    # Keep at least the latest epoch's checkpoint while training (for --resume); save_finetuned prunes after.
    settings = {**train, "seed": seed, "max_steps": train["max_steps"] or math.ceil(train["epochs"] * steps_per_epoch),
                "keep_checkpoints": max(1, train["keep_checkpoints"])}  # fmt: skip
    config = TrainConfig(
        **settings, **every_epoch, output_dir=output,
        run=run_settings(job, train, seed), model_config=model.config.to_diff_dict(), flags=job["flags"],
    )  # fmt: skip
    by_epoch = (
        (lambda step, value: report(step // steps_per_epoch, value, step >= config.max_steps)) if report else None
    )
    lower = job["metric"] in kinds.get(job["task"]).lower_is_better
    keeper = BestKeeper(job["metric"], job["patience"], by_epoch, lower) if job["validation"] else None
    dist = distributed.setup(train["device"], train["dist_timeout"])  # the command's group, made once
    train_loop(model, task, config, dist, keeper=keeper, log=log, emit_metrics=report is None)
    if keeper is not None:
        keeper.load_best_into(model)
    summary = {}
    if dist.is_main:
        summary = save_finetuned(
            model, tokenizer, config, keeper, job["metric"], steps_per_epoch, train["keep_checkpoints"]
        )
    dist.barrier()  # the run is finished for every process once its files are there
    return summary


def save_finetuned(model, tokenizer, config, keeper, metric: str, steps_per_epoch: int, keep_checkpoints: int) -> dict:
    """The best model, its validation metrics and config in the output root; the epoch
    checkpoints go unless --keep-checkpoints asks for them.  Returns the summary."""
    from tweetkit.modeling import save_model
    from tweetkit.train import checkpoint

    output = config.output_dir
    save_model(model, tokenizer, output)
    best = keeper.state() if keeper is not None else {"step": config.max_steps, "metrics": {}}
    scalars = {k: v for k, v in best["metrics"].items() if isinstance(v, (int, float))}
    summary = {
        "seed": config.seed,
        "metric": metric,
        "best_step": best["step"],
        "best_epoch": best["step"] // steps_per_epoch,
        **scalars,
    }
    with open(os.path.join(output, "validation_metrics.json"), "w", encoding="utf-8") as handle:
        json.dump({**summary, "details": best["metrics"]}, handle, indent=2)
    config.save(output)  # last: its presence marks a finished run
    if not keep_checkpoints:
        checkpoint.remove_all(output)  # the optimizer state is twice the model: kept only if asked
    return summary


def finished_summary(output: str, job: dict, train: dict, seed: int) -> dict | None:
    """The summary of a finished run in `output` with these settings, else None."""
    from tweetkit.errors import ConfigError
    from tweetkit.train import checkpoint

    try:
        with open(os.path.join(output, "tweetkit_train_config.json"), encoding="utf-8") as handle:
            saved = json.load(handle)
        with open(os.path.join(output, "validation_metrics.json"), encoding="utf-8") as handle:
            summary = json.load(handle)
    except (OSError, ValueError):
        return None
    changed = checkpoint.differences(saved.get("run", {}), json.loads(json.dumps(run_settings(job, train, seed))))
    if changed:
        raise ConfigError(
            f"--resume: {output} holds a finished run with other settings ({'; '.join(changed)}); use --overwrite to start again"
        )
    summary.pop("details", None)
    return summary


def finetune_linear(args: dict, output: str) -> dict:
    """The linear baseline (tweetkit.linear): TF-IDF n-grams, or per-word features for
    tagging, + logistic regression. Deterministic, so one run whatever the seed."""
    from tweetkit import linear
    from tweetkit import metrics as scorers
    from tweetkit.errors import ConfigError

    kind = args["task"]
    if not kinds.get(kind).linear_baseline:
        supported = " and ".join(f"--task {name}" for name, k in kinds.KINDS.items() if k.linear_baseline)
        raise ConfigError(f"--model linear supports {supported}")
    if len(args["labels"]) < 2:
        raise ConfigError(
            f"--model linear needs at least two different labels in --train (found only {args['labels'][0]!r})"
        )
    inputs, targets = [x for x, _ in args["train"]], [y for _, y in args["train"]]
    balanced = kind == "classification" or scorers.is_bio(targets)  # not for POS tags: bench/tagging_baseline.py
    pipeline = linear.fit(kind, inputs, targets, args["linear_c"], balanced)
    linear.save(pipeline, kind, args["labels"], output)
    summary: dict = {"model": "linear"}
    if args["validation"]:
        inputs, gold = [x for x, _ in args["validation"]], [y for _, y in args["validation"]]
        predicted = linear.predict(pipeline, kind, inputs)
        if kind == "classification":
            gold, predicted = [str(label) for label in gold], [label for label, _ in predicted]
        labels = args["labels"] if kind == "classification" else None
        scores = kinds.get(kind).score(gold, predicted, labels, args["positive_label"])
        summary.update({f"validation_{k}": v for k, v in scores.items() if isinstance(v, (int, float))})
    return summary


# --- seeds and sweeps ------------------------------------------------------------------


def mean_std(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if k.startswith("validation_") and all(isinstance(r.get(k), (int, float)) for r in runs)]
    out = {}
    for key in keys:
        values = [r[key] for r in runs]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        out[key] = {"mean": mean, "std": std}
    return out


def parse_sweep(text: str) -> dict[str, list]:
    grid = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, values = part.partition("=")
        name = name.strip().replace("-", "_").replace("tfidf_c", "linear_c")
        if (
            name not in ("lr", "batch_size", "epochs", "weight_decay", "warmup_ratio", "max_length", "linear_c")
            or not values
        ):
            raise click.BadParameter(
                f"cannot sweep {part!r} (lr, batch-size, epochs, weight-decay, warmup-ratio, max-length, linear-c)",
                param_hint="--sweep",
            )
        cast = int if name in ("batch_size", "epochs", "max_length") else float
        try:
            grid[name] = [cast(v) for v in values.split(",")]
        except ValueError:
            raise click.BadParameter(f"bad value in {part!r}", param_hint="--sweep") from None
        check_range(name, grid[name], f"--sweep {part!r}")
    return grid


@click.command(
    "finetune",
    epilog="""\b
Examples:
  tweetkit finetune --model mlm/ --task classification --train sem.train.jsonl --validation sem.dev.jsonl -o sent/
  tweetkit finetune --model mlm/ --task tagging --train wnut17/train.jsonl --validation wnut17/validation.jsonl -o ner/
  tweetkit finetune --model mlm/ --task classification --seeds 1,2,3,4,5 --positive-label irony ... -o irony/
  tweetkit finetune --model linear --task classification --train ... --validation ... -o linear/
  tweetkit finetune --model mlm/ --sweep "lr=1e-5,3e-5;batch-size=16,32" ... -o sweep/
  tweetkit finetune ... -o sent/ --resume      # continue after Ctrl-C or a crash
  tweetkit finetune --config irony.toml -o irony/""",
)
@threads_option
@config_options
@click.option(
    "--model",
    required=True,
    help="Model directory or name, or 'linear' (alias 'tfidf') for the linear baseline: TF-IDF n-grams, or per-word features for tagging, + logistic regression.",
)
@click.option("--task", "kind", type=click.Choice(kinds.NAMES), required=True)
@click.option("--train", "train_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--validation",
    "validation_path",
    type=click.Path(dir_okay=False),
    help="Scored every epoch; the best epoch is kept.",
)
@output_option("Output directory: the best model, its config and validation metrics.")
@field_option("Field of the text (sequence tasks).", name="text_field")
@click.option("--label-field", default="label", show_default=True)
@click.option("--tokens-field", default="tokens", show_default=True, help="Field of the word list (tagging).")
@click.option("--tags-field", default="tags", show_default=True)
@click.option(
    "--patience",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Stop after N epochs without a better validation metric (0: never).",
)
@click.option(
    "--metric", help="Validation metric to select on [default: by task: macro_f1, f1_pos, pearson, f1 or accuracy]."
)
@click.option("--positive-label", help="Report (and select on) the F1 of this class, e.g. irony (SemEval-2018 3A).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Multi-label decision threshold.")
@label_map_option(
    "Rename gold labels as they are read, e.g. 'Extremely Positive=Positive,Extremely Negative=Negative' "
    "(5 COVID classes as 3); the model learns the mapped labels."
)
@click.option("--max-length", type=click.IntRange(min=8), default=128, show_default=True)
@train_options(
    TRAIN_FLAGS,
    defaults={
        "batch_size": 32,
        "epochs": 30.0,
        "lr": 1e-5,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "warmup_ratio": 0.1,
        "seed": 1,
    },
    helps={
        "keep_checkpoints": "Keep the N newest epoch checkpoints (with optimizer state) after training; 0: only the best model.",
        "warmup_ratio": "Share of the steps spent in linear warm-up, before linear decay to 0.",
    },
)
@click.option("--seeds", help="Comma-separated seeds: one fine-tune each, in DIR/seed-N, with mean ± std.")
@click.option("--sweep", help='Grid, e.g. "lr=1e-5,3e-5;batch-size=16,32", scored on validation.')
@click.option(
    "--sweep-method",
    type=click.Choice(["grid", "random", "tpe"]),
    help="Search (Optuna): the --sweep grid, or random or TPE (Bayesian) samples of --search-space [default: grid with --sweep].",
)
@click.option(
    "--search-space",
    # The default spaced after each ';' so that the help wraps between parameters, not inside one.
    help=f"For random/tpe: NAME=lo:hi, log:lo:hi, int:lo:hi or a,b,c, ';'-separated [default: {DEFAULT_SPACE.replace(';', '; ')}].",
)
@click.option(
    "--sweep-trials",
    type=click.IntRange(min=1),
    help="Trials to finish, counting pruned ones and those of other workers [default: the grid's size, or 20].",
)
@click.option(
    "--study-storage",
    help="Optuna storage URL shared by the workers of one study, e.g. postgresql://host/db [default: sqlite:///DIR/study.db].",
)
@click.option(
    "--study-name",
    default="finetune",
    show_default=True,
    help="The study in --study-storage; a name that exists is continued.",
)
@click.option(
    "--prune/--no-prune",
    default=True,
    show_default=True,
    help="Median pruning: stop a trial whose validation metric is below the median of earlier trials at the same epoch.",
)
@click.option(
    "--linear-c",
    "--tfidf-c",
    "linear_c",
    type=float,
    default=1.0,
    show_default=True,
    help="Inverse regularisation of the linear baseline.",
)
@ON_ERROR
@QUIET
def command(
    flags,
    train,
    model,
    kind,
    train_path,
    validation_path,
    output,
    text_field,
    label_field,
    tokens_field,
    tags_field,
    patience,
    metric,
    positive_label,
    threshold,
    label_map,
    max_length,
    seeds,
    sweep,
    sweep_method,
    search_space,
    sweep_trials,
    study_storage,
    study_name,
    prune,
    linear_c,
    on_error,
    quiet,
):
    """Fine-tune a model on a labelled task; keep the best epoch.

    Metrics per epoch go to stdout as JSON lines; the best model is saved as an HF
    directory (AutoModelForSequenceClassification / AutoModelForTokenClassification)
    with id2label/label2id in its config.  A checkpoint is written every epoch (and on
    Ctrl-C) for --resume, and removed when the run ends.
    """
    from tweetkit.errors import UsageError
    from tweetkit.io import refuse_overlap
    from tweetkit.output_dir import prepare_output_dir
    from tweetkit.train import distributed

    linear = model in ("linear", "tfidf")
    if not linear:
        from tweetkit.modeling import check_encoder

        check_encoder(model)  # before reading data: a wrong --model fails at once
    if label_map and kind == "regression":
        raise UsageError("--label-map: --task regression has numbers, not labels, to map")
    refuse_overlap([train_path, validation_path], [output])
    grid = parse_sweep(sweep) if sweep else None
    sweep_method = sweep_method or ("grid" if grid else None)
    if sweep_method == "grid" and not grid:
        raise click.UsageError("--sweep-method grid needs the grid in --sweep")
    if sweep_method and distributed.world_size() > 1:
        raise UsageError(
            "a sweep runs its trials in separate processes, not under torchrun: start several "
            "`finetune --sweep-method ... --study-storage URL` workers instead"
        )
    dist = distributed.setup(train["device"], train["dist_timeout"]) if not linear else None
    if linear and distributed.world_size() > 1 and int(os.environ["RANK"]) != 0:
        return  # the linear baseline fits in one process: the first one
    try:
        # A sweep's directory is its study's workspace: what is there is continued, unless --overwrite.
        # Every process checks the directory; the first removes a previous run, the others wait.
        sweeping = bool(sweep_method) and not train["overwrite"]
        prepare_output_dir(
            output,
            resume=(train["resume"] and not linear) or sweeping,
            overwrite=train["overwrite"],
            remove=dist is None or dist.is_main,
        )
        if dist is not None:
            dist.barrier()
        space = parse_space(search_space or DEFAULT_SPACE) if sweep_method in ("random", "tpe") else {}
        seed_list = parse_seeds(seeds) if seeds else None
        log = log_for("finetune", quiet or (dist is not None and not dist.is_main))
        fields = {"text": text_field, "label": label_field, "tokens": tokens_field, "tags": tags_field}
        job = dict(model="linear" if linear else model, task=kind, metric=metric, positive_label=positive_label, threshold=threshold, max_length=max_length,
                   patience=patience, linear_c=linear_c, train_path=train_path, validation_path=validation_path, fields=fields, flags=flags,
                   label_map=label_map)  # fmt: skip
        job.update(read_task_data(job, on_error, log))
        sweep_settings = dict(
            method=sweep_method, trials=sweep_trials, storage=study_storage, name=study_name, prune=prune
        )
        finetune_all(job, train, output, seed_list, sweep_settings, space, grid, log)
        if dist is not None:
            dist.barrier()  # leave together: a process that tears its group down while another still writes can abort
    finally:
        distributed.teardown()


def finetune_all(job: dict, train: dict, output: str, seed_list, sweep_settings: dict, space: dict, grid, log) -> None:
    """One run, one per seed (DIR/seed-N, mean ± std), or a sweep; the summary on stdout."""

    def run(point: dict, seed: int, directory: str, report=None) -> dict:
        settings = {**train, **{k: v for k, v in point.items() if k in train}}
        if job["model"] == "linear":
            return finetune_linear({**job, **settings, **point}, directory)
        in_job = {k: v for k, v in point.items() if k in job}
        flags = job["flags"] if directory == output else one_run_flags(job["flags"], point, seed, directory)
        return finetune_once({**job, **in_job, "flags": flags}, settings, seed, directory, log, report)

    if sweep_settings["method"]:
        emit(run_sweep(run, job, train, sweep_settings, space, grid, output, log))
    elif seed_list:
        runs = [run({}, s, os.path.join(output, f"seed-{s}")) for s in seed_list]
        summary = mean_std(runs)
        for key, value in summary.items():
            log(f"{key[11:]}: {value['mean']:.4f} ± {value['std']:.4f} over {len(runs)} seeds")
        emit({"seeds": seed_list, "mean_std": summary})
    else:
        emit({"best": run({}, train["seed"], output)})


# Flags that run several fine-tunes; a trial's or a seed's saved flags rerun that one alone.
MANY_RUNS = ("seeds", "sweep", "sweep_method", "search_space", "sweep_trials", "study_storage", "study_name", "prune")


def one_run_flags(flags: dict, point: dict, seed: int, directory: str) -> dict:
    """The flags of one trial or seed: the command's, with its own settings, seed and directory."""
    own = {name: list(value) if isinstance(value, tuple) else value for name, value in point.items()}
    kept = {name: value for name, value in flags.items() if name not in MANY_RUNS}
    return {**kept, **own, "seed": seed, "output": directory}


def run_sweep(run, job: dict, train: dict, flags: dict, space: dict, grid: dict | None, output: str, log) -> dict:
    """An Optuna study over `space` (or the `grid`), trials in DIR/trial-N, the best at DIR."""
    if not job["validation"]:
        raise click.UsageError("a sweep needs --validation: trials are compared on it")
    size = math.prod(len(values) for values in grid.values()) if flags["method"] == "grid" else 20
    settings = SweepSettings(
        method=flags["method"],
        trials=min(flags["trials"] or size, size) if flags["method"] == "grid" else flags["trials"] or size,
        storage=flags["storage"] or default_storage(output),
        study_name=flags["name"],
        seed=train["seed"],
        prune=flags["prune"],
        direction="minimize" if job["metric"] in kinds.get(job["task"]).lower_is_better else "maximize",
        overwrite=train["overwrite"],
    )

    def objective(point: dict, report, directory: str) -> float:
        return run(point, train["seed"], directory, report)[f"validation_{job['metric']}"]

    return run_study(settings, space, grid, objective, output, log)


def mapped_examples(job: dict, train: list[tuple], validation: list[tuple]) -> tuple[list, list]:
    """--label-map applied to both sets, once each of its labels is known to occur in them."""
    from tweetkit.errors import ConfigError
    from tweetkit.metrics import check_label_map

    kind, mapping = job["task"], job["label_map"]
    where = " or ".join(filter(None, [job["train_path"], job["validation_path"]]))
    try:
        check_label_map(mapping, set(label_names_of(kind, train + validation)), where)
    except ValueError as exc:
        raise ConfigError(f"--label-map: {exc}") from None
    return [[(x, kinds.get(kind).map_labels(y, mapping)) for x, y in examples] for examples in (train, validation)]


def read_task_data(job: dict, on_error: str, log) -> dict:
    """The examples, label set and validation metric, every check made before training."""
    from tweetkit.errors import ConfigError

    kind, train_path, validation_path = job["task"], job["train_path"], job["validation_path"]
    train_examples = read_examples(train_path, kind, job["fields"], on_error)
    validation_examples = read_examples(validation_path, kind, job["fields"], on_error) if validation_path else []
    if job.get("label_map"):
        train_examples, validation_examples = mapped_examples(job, train_examples, validation_examples)
    if not train_examples:
        raise ConfigError(f"{train_path}: no training examples")
    if validation_path and not validation_examples:
        raise ConfigError(f"{validation_path}: no validation examples")
    labels = label_names_of(kind, train_examples)
    unseen = set(label_names_of(kind, validation_examples) or []) - set(labels or [])
    if labels is not None and unseen:
        raise ConfigError(f"{validation_path}: labels not in the training data: {', '.join(sorted(unseen)[:5])}")
    golds = [label for _, label in train_examples]
    metric = job["metric"] or kinds.get(kind).primary_metric(golds, job["positive_label"])
    if validation_examples:
        check_metric(kind, metric, validation_examples, job["positive_label"])
    log(
        f"{len(train_examples):,} training and {len(validation_examples):,} validation examples; labels: {len(labels) if labels else 'numeric'}"
    )
    return {"train": train_examples, "validation": validation_examples, "labels": labels, "metric": metric}


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter("expected integers, e.g. 1,2,3", param_hint="--seeds") from None


def emit(record: dict) -> None:
    if os.environ.get("RANK", "0") != "0":  # under torchrun the first process speaks for the job
        return
    from tweetkit.records import emit_json

    emit_json(record)
