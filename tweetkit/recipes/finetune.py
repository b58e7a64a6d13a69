"""The fine-tuning recipe: classification, multi-label, regression and tagging on the shared
training core, or the linear baseline; one run, one per seed, or a sweep (`tweetkit finetune`)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

from tweetkit import kinds
from tweetkit.train.best import METRICS_FILE

LINEAR_NAMES = ("linear", "tfidf")  # --model for the linear baseline (tweetkit.linear)


@dataclass
class SweepPlan:
    """A search over fine-tuning settings (tweetkit.sweep)."""

    method: str  # grid | random | tpe
    grid: dict | None  # parameter -> its values, for grid
    space: dict  # parameter -> Optuna distribution, for random and tpe
    trials: int | None  # finished trials to reach [default: the grid's size, or 20]
    storage: str | None  # Optuna storage URL [default: sqlite:///OUTPUT/study.db]
    name: str  # the study in the storage
    prune: bool  # median pruning on the per-epoch validation metric


@dataclass
class FinetuneConfig:
    """One `finetune` job: the model, the data, the task's settings and the training core's."""

    model: str  # an encoder directory or name, or one of LINEAR_NAMES
    task: str  # a kind of tweetkit.kinds
    train_path: str
    validation_path: str | None  # scored every epoch; the best epoch is kept
    output: str
    train: dict  # the training core's settings (TrainConfig fields): lr, epochs, seed, resume, ...
    fields: dict  # the record fields of text, label, tokens and tags
    metric: str | None = None  # validation metric to select on [default: the task's primary metric]
    positive_label: str | None = None
    threshold: float = 0.5  # multi-label decision threshold
    max_length: int = 128
    patience: int = 5  # epochs without a better validation metric before stopping (0: never)
    linear_c: float = 1.0  # inverse regularisation of the linear baseline
    label_map: dict | None = None  # gold labels renamed as they are read
    seeds: list[int] | None = None  # one run each, in OUTPUT/seed-N
    sweep: SweepPlan | None = None
    flags: dict = field(default_factory=dict)  # the resolved flags, saved with each run for --config
    on_error: str = "fail"
    quiet: bool = False

    def __post_init__(self):
        if self.model in LINEAR_NAMES:
            self.model = "linear"

    @property
    def linear(self) -> bool:
        return self.model == "linear"


@dataclass
class TaskData:
    """The examples read for a job, with what they decide: the label set and the metric."""

    train: list[tuple]  # (input, label) pairs
    validation: list[tuple]
    labels: list[str] | None  # None for numeric labels
    metric: str


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


def mapped_examples(config: FinetuneConfig, train: list[tuple], validation: list[tuple]) -> tuple[list, list]:
    """--label-map applied to both sets, once each of its labels is known to occur in them."""
    from tweetkit.errors import ConfigError
    from tweetkit.metrics import check_label_map

    kind, mapping = config.task, config.label_map
    where = " or ".join(filter(None, [config.train_path, config.validation_path]))
    try:
        check_label_map(mapping, set(label_names_of(kind, train + validation)), where)
    except ValueError as exc:
        raise ConfigError(f"--label-map: {exc}") from None
    return [[(x, kinds.get(kind).map_labels(y, mapping)) for x, y in examples] for examples in (train, validation)]


def read_task_data(config: FinetuneConfig, log) -> TaskData:
    """The examples, label set and validation metric, every check made before training."""
    from tweetkit.errors import ConfigError

    kind, train_path, validation_path = config.task, config.train_path, config.validation_path
    train_examples = read_examples(train_path, kind, config.fields, config.on_error)
    validation_examples = (
        read_examples(validation_path, kind, config.fields, config.on_error) if validation_path else []
    )
    if config.label_map:
        train_examples, validation_examples = mapped_examples(config, train_examples, validation_examples)
    if not train_examples:
        raise ConfigError(f"{train_path}: no training examples")
    if validation_path and not validation_examples:
        raise ConfigError(f"{validation_path}: no validation examples")
    labels = label_names_of(kind, train_examples)
    unseen = set(label_names_of(kind, validation_examples) or []) - set(labels or [])
    if labels is not None and unseen:
        raise ConfigError(f"{validation_path}: labels not in the training data: {', '.join(sorted(unseen)[:5])}")
    golds = [label for _, label in train_examples]
    metric = config.metric or kinds.get(kind).primary_metric(golds, config.positive_label)
    if validation_examples:
        check_metric(kind, metric, validation_examples, config.positive_label)
    log(
        f"{len(train_examples):,} training and {len(validation_examples):,} validation examples; "
        f"labels: {len(labels) if labels else 'numeric'}"
    )
    return TaskData(train_examples, validation_examples, labels, metric)


# --- one run ---------------------------------------------------------------------------


def run_settings(config: FinetuneConfig, data: TaskData, train: dict, seed: int) -> dict:
    """What makes two fine-tuning runs the same run (compared on --resume)."""
    same = {"model": config.model, "task": config.task, "labels": data.labels, "max_length": config.max_length,
            "metric": data.metric, "positive_label": config.positive_label, "threshold": config.threshold,
            "patience": config.patience, "train_path": config.train_path, "validation_path": config.validation_path,
            "fields": config.fields}  # fmt: skip
    # where and how it runs, not what it computes
    where = ("resume", "overwrite", "keep_checkpoints", "device", "dist_timeout", "compile", "seed")
    how = {k: v for k, v in train.items() if k not in where}
    mapped = {"label_map": config.label_map} if config.label_map else {}  # absent when unused: older runs resume
    return {"seed": seed, **same, **mapped, **how}


def model_and_task(config: FinetuneConfig, data: TaskData, train: dict, seed: int):
    """(model, tokenizer, task): the pretrained encoder with its kind's new head, and its data."""
    import torch

    from tweetkit.modeling import load_pretrained, load_tokenizer
    from tweetkit.tasks.supervised import SequenceTask, TaggingTask

    kind, labels = kinds.get(config.task), data.labels
    tokenizer = load_tokenizer(config.model, tagging=kind.name == "tagging")
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
    model = load_pretrained(kind.head(), config.model, attn_implementation="sdpa", **head)
    common = (data.train, data.validation, labels, config.max_length, train["batch_size"], seed)
    if kind.name == "tagging":
        task = TaggingTask(tokenizer, *common)
    else:
        task = SequenceTask(kind.name, tokenizer, *common, config.positive_label, config.threshold)
    model.config.max_length_trained = config.max_length
    return model, tokenizer, task


def finetune_once(
    config: FinetuneConfig, data: TaskData, train: dict, seed: int, output: str, log, report=None
) -> dict:
    """Fine-tune one model with one seed; save the best epoch's model to `output`.
    `report(epoch, value, final)` sees each validation value (a sweep's pruner)."""
    from tweetkit.train import distributed
    from tweetkit.train.best import BestKeeper
    from tweetkit.train.config import TrainConfig
    from tweetkit.train.loop import train as train_loop

    finished = finished_summary(output, config, data, train, seed) if train["resume"] else None
    if finished is not None:
        log(f"{output}: this run finished already; nothing to resume")
        return finished
    model, tokenizer, task = model_and_task(config, data, train, seed)
    steps_per_epoch = max(1, task.num_examples() // train["batch_size"])
    every_epoch = dict(eval_every=steps_per_epoch, log_every=steps_per_epoch, save_every=steps_per_epoch)
    # Keep at least the latest epoch's checkpoint while training (for --resume); save_finetuned prunes after.
    settings = {**train, "seed": seed, "max_steps": train["max_steps"] or math.ceil(train["epochs"] * steps_per_epoch),
                "keep_checkpoints": max(1, train["keep_checkpoints"])}  # fmt: skip
    train_config = TrainConfig(
        **settings, **every_epoch, output_dir=output,
        run=run_settings(config, data, train, seed), model_config=model.config.to_diff_dict(), flags=config.flags,
    )  # fmt: skip
    by_epoch = (
        (lambda step, value: report(step // steps_per_epoch, value, step >= train_config.max_steps)) if report else None
    )
    lower = data.metric in kinds.get(config.task).lower_is_better
    keeper = BestKeeper(data.metric, config.patience, by_epoch, lower) if data.validation else None
    dist = distributed.setup(train["device"], train["dist_timeout"])  # the command's group, made once
    train_loop(model, task, train_config, dist, keeper=keeper, log=log, emit_metrics=report is None)
    if keeper is not None:
        keeper.load_best_into(model)
    summary = {}
    if dist.is_main:
        summary = save_finetuned(
            model, tokenizer, train_config, keeper, data.metric, steps_per_epoch, train["keep_checkpoints"]
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
    with open(os.path.join(output, METRICS_FILE), "w", encoding="utf-8") as handle:
        json.dump({**summary, "details": best["metrics"]}, handle, indent=2)
    config.save(output)  # last: its presence marks a finished run
    if not keep_checkpoints:
        checkpoint.remove_all(output)  # the optimizer state is twice the model: kept only if asked
    return summary


def finished_summary(output: str, config: FinetuneConfig, data: TaskData, train: dict, seed: int) -> dict | None:
    """The summary of a finished run in `output` with these settings, else None."""
    from tweetkit.errors import ConfigError
    from tweetkit.train import checkpoint

    try:
        with open(os.path.join(output, "tweetkit_train_config.json"), encoding="utf-8") as handle:
            saved = json.load(handle)
        with open(os.path.join(output, METRICS_FILE), encoding="utf-8") as handle:
            summary = json.load(handle)
    except (OSError, ValueError):
        return None
    wanted = json.loads(json.dumps(run_settings(config, data, train, seed)))
    changed = checkpoint.differences(saved.get("run", {}), wanted)
    if changed:
        raise ConfigError(
            f"--resume: {output} holds a finished run with other settings ({'; '.join(changed)}); "
            "use --overwrite to start again"
        )
    summary.pop("details", None)
    return summary


def finetune_linear(config: FinetuneConfig, data: TaskData, output: str) -> dict:
    """The linear baseline (tweetkit.linear): TF-IDF n-grams, or per-word features for
    tagging, + logistic regression. Deterministic, so one run whatever the seed."""
    from tweetkit import linear
    from tweetkit import metrics as scorers
    from tweetkit.errors import ConfigError

    kind = config.task
    if not kinds.get(kind).linear_baseline:
        supported = " and ".join(f"--task {name}" for name, k in kinds.KINDS.items() if k.linear_baseline)
        raise ConfigError(f"--model linear supports {supported}")
    if len(data.labels) < 2:
        raise ConfigError(
            f"--model linear needs at least two different labels in --train (found only {data.labels[0]!r})"
        )
    inputs, targets = [x for x, _ in data.train], [y for _, y in data.train]
    balanced = kind == "classification" or scorers.is_bio(targets)  # not for POS tags: bench/tagging_baseline.py
    pipeline = linear.fit(kind, inputs, targets, config.linear_c, balanced)
    linear.save(pipeline, kind, data.labels, output)
    summary: dict = {"model": "linear"}
    if data.validation:
        inputs, gold = [x for x, _ in data.validation], [y for _, y in data.validation]
        predicted = linear.predict(pipeline, kind, inputs)
        if kind == "classification":
            gold, predicted = [str(label) for label in gold], [label for label, _ in predicted]
        labels = data.labels if kind == "classification" else None
        scores = kinds.get(kind).score(gold, predicted, labels, config.positive_label)
        summary.update({f"validation_{k}": v for k, v in scores.items() if isinstance(v, (int, float))})
    return summary


# --- the job: checks, one run, seeds or a sweep ----------------------------------------


def check_job(config: FinetuneConfig) -> None:
    """What can be refused before any data is read."""
    from tweetkit.errors import UsageError
    from tweetkit.io import refuse_overlap
    from tweetkit.train import distributed

    if not config.linear:
        from tweetkit.modeling import check_encoder

        check_encoder(config.model)  # before reading data: a wrong --model fails at once
    if config.label_map and config.task == "regression":
        raise UsageError("--label-map: --task regression has numbers, not labels, to map")
    refuse_overlap([config.train_path, config.validation_path], [config.output])
    if config.sweep and not config.validation_path:
        raise UsageError("a sweep needs --validation: trials are compared on it")
    if config.sweep and distributed.world_size() > 1:
        raise UsageError(
            "a sweep runs its trials in separate processes, not under torchrun: start several "
            "`finetune --sweep-method ... --study-storage URL` workers instead"
        )


def run(config: FinetuneConfig) -> None:
    """The job: its data read and checked, then one run, one per seed or a sweep; under
    torchrun, every process trains and the first writes (the linear baseline: the first alone)."""
    from tweetkit.output_dir import prepare_output_dir
    from tweetkit.reports import log_for
    from tweetkit.train import distributed

    check_job(config)
    train = config.train
    dist = distributed.setup(train["device"], train["dist_timeout"]) if not config.linear else None
    if config.linear and distributed.world_size() > 1 and int(os.environ["RANK"]) != 0:
        return  # the linear baseline fits in one process: the first one
    try:
        # A sweep's directory is its study's workspace: what is there is continued, unless --overwrite.
        # Every process checks the directory; the first removes a previous run, the others wait.
        sweeping = config.sweep is not None and not train["overwrite"]
        prepare_output_dir(
            config.output,
            resume=(train["resume"] and not config.linear) or sweeping,
            overwrite=train["overwrite"],
            remove=dist is None or dist.is_main,
        )
        if dist is not None:
            dist.barrier()
        log = log_for("finetune", config.quiet or (dist is not None and not dist.is_main))
        run_all(config, read_task_data(config, log), log)
        if dist is not None:
            dist.barrier()  # leave together: a process that tears its group down while another still writes can abort
    finally:
        distributed.teardown()


def run_all(config: FinetuneConfig, data: TaskData, log) -> None:
    """One run, one per seed (DIR/seed-N, mean ± std), or a sweep; the summary on stdout."""
    from tweetkit.output_dir import SEED_DIR
    from tweetkit.sweep import JOB_PARAMS

    output = config.output

    def run_one(point: dict, seed: int, directory: str, report=None) -> dict:
        settings = {**config.train, **{k: v for k, v in point.items() if k in config.train}}
        own = {k: v for k, v in point.items() if k in JOB_PARAMS}
        flags = config.flags if directory == output else one_run_flags(config.flags, point, seed, directory)
        job = dataclasses.replace(config, **own, flags=flags)
        if job.linear:
            return finetune_linear(job, data, directory)
        return finetune_once(job, data, settings, seed, directory, log, report)

    if config.sweep:
        emit(run_sweep(run_one, config, data.metric, log))
    elif config.seeds:
        runs = [run_one({}, s, os.path.join(output, f"{SEED_DIR}-{s}")) for s in config.seeds]
        summary = mean_std(runs)
        for key, value in summary.items():
            log(f"{key[11:]}: {value['mean']:.4f} ± {value['std']:.4f} over {len(runs)} seeds")
        emit({"seeds": config.seeds, "mean_std": summary})
    else:
        emit({"best": run_one({}, config.train["seed"], output)})


# Flags that run several fine-tunes; a trial's or a seed's saved flags rerun that one alone.
MANY_RUNS = ("seeds", "sweep", "sweep_method", "search_space", "sweep_trials", "study_storage", "study_name", "prune")


def one_run_flags(flags: dict, point: dict, seed: int, directory: str) -> dict:
    """The flags of one trial or seed: the command's, with its own settings, seed and directory."""
    own = {name: list(value) if isinstance(value, tuple) else value for name, value in point.items()}
    kept = {name: value for name, value in flags.items() if name not in MANY_RUNS}
    return {**kept, **own, "seed": seed, "output": directory}


def mean_std(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if k.startswith("validation_") and all(isinstance(r.get(k), (int, float)) for r in runs)]
    out = {}
    for key in keys:
        values = [r[key] for r in runs]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        out[key] = {"mean": mean, "std": std}
    return out


def run_sweep(run_one, config: FinetuneConfig, metric: str, log) -> dict:
    """An Optuna study over the plan's space (or grid), trials in DIR/trial-N, the best at DIR."""
    from tweetkit.sweep import SweepSettings, default_storage, run_study

    plan, train = config.sweep, config.train
    grid = plan.method == "grid"
    size = math.prod(len(values) for values in plan.grid.values()) if grid else 20
    settings = SweepSettings(
        method=plan.method,
        trials=min(plan.trials or size, size) if grid else plan.trials or size,
        storage=plan.storage or default_storage(config.output),
        study_name=plan.name,
        seed=train["seed"],
        prune=plan.prune,
        direction="minimize" if metric in kinds.get(config.task).lower_is_better else "maximize",
        overwrite=train["overwrite"],
    )

    def objective(point: dict, report, directory: str) -> float:
        return run_one(point, train["seed"], directory, report)[f"validation_{metric}"]

    return run_study(settings, plan.space, plan.grid, objective, config.output, log)


def emit(record: dict) -> None:
    if os.environ.get("RANK", "0") != "0":  # under torchrun the first process speaks for the job
        return
    from tweetkit.records import emit_json

    emit_json(record)
