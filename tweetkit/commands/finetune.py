"""tweetkit finetune: classification, multi-label, regression and tagging on the shared training core."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import sys

import click

TASKS = ("classification", "multilabel", "regression", "tagging")


# --- data ------------------------------------------------------------------------------


def read_examples(path: str, kind: str, fields: dict, on_error: str) -> list[tuple]:
    """(input, label) pairs; bad lines follow --on-error with file:line messages."""
    from tweetkit.io import StreamOptions, consume_records

    options = StreamOptions(inputs=[path], on_error=on_error, quiet=True)
    if kind == "tagging":
        records = consume_records("finetune", options, fields["tokens"], field_type=list, required=[fields["tags"]])
        examples = [(r[fields["tokens"]], [str(t) for t in r[fields["tags"]]]) for r in records]
        for words, tags in examples:
            if len(words) != len(tags):
                from tweetkit.errors import ConfigError

                raise ConfigError(f"{path}: a record has {len(words)} tokens but {len(tags)} tags")
        return examples
    records = consume_records("finetune", options, fields["text"], required=[fields["label"]])
    return [(r[fields["text"]], r[fields["label"]]) for r in records]


def label_names_of(kind: str, examples: list[tuple]) -> list[str] | None:
    if kind == "regression":
        return None
    if kind == "multilabel":
        return sorted({str(label) for _, labels in examples for label in labels})
    if kind == "tagging":
        return sorted({tag for _, tags in examples for tag in tags})
    return sorted({str(label) for _, label in examples})


# --- one run ---------------------------------------------------------------------------


def finetune_once(args: dict, seed: int, output: str, log) -> dict:
    """Fine-tune one model with one seed; save the best epoch's model to `output`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    from tweetkit.errors import ConfigError
    from tweetkit.tasks.supervised import PROBLEM_TYPES, SequenceTask, TaggingTask
    from tweetkit.tokenizers import load_tokenizer
    from tweetkit.train import distributed
    from tweetkit.train.config import TrainConfig
    from tweetkit.train.loop import train

    from tweetkit.models import quiet_transformers

    quiet_transformers()
    kind, train_examples, validation_examples, labels = args["task"], args["train"], args["validation"], args["labels"]
    tokenizer = load_tokenizer(args["model"])
    if kind == "tagging" and getattr(tokenizer, "add_prefix_space", None) is False:
        tokenizer = load_tokenizer_with_prefix_space(args["model"])
    metric = args["metric"]
    torch.manual_seed(seed)  # the new head's initialisation
    common = dict(attn_implementation="sdpa")
    try:
        if kind == "tagging":
            model = AutoModelForTokenClassification.from_pretrained(args["model"], num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}, **common)
            task = TaggingTask(tokenizer, train_examples, validation_examples, labels, args["max_length"], args["batch_size"], seed, metric)
        else:
            num_labels = 1 if kind == "regression" else len(labels)
            mapping = {} if kind == "regression" else dict(id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
            model = AutoModelForSequenceClassification.from_pretrained(args["model"], num_labels=num_labels, problem_type=PROBLEM_TYPES[kind], **mapping, **common)
            task = SequenceTask(kind, tokenizer, train_examples, validation_examples, labels, args["max_length"], args["batch_size"], seed, metric, args["positive_label"], args["threshold"])
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {args['model']}: {str(exc).splitlines()[0]}") from None
    model.config.max_length_trained = args["max_length"]

    steps_per_epoch = max(1, task.num_examples() // args["batch_size"])
    config = TrainConfig(
        output_dir=output, seed=seed, batch_size=args["batch_size"], max_steps=args["epochs"] * steps_per_epoch,
        lr=args["lr"], weight_decay=args["weight_decay"], betas=(0.9, 0.999), eps=1e-8, warmup_ratio=args["warmup_ratio"],
        precision=args["precision"], eval_every=steps_per_epoch, log_every=steps_per_epoch, device=args["device"], command_line=sys.argv,
    )
    key = f"validation_{metric}"
    best = {"value": -math.inf, "metrics": {}, "state": None, "step": 0, "waited": 0}

    def on_evaluate(step, results):
        if key not in results:
            raise ConfigError(f"--metric {metric}: not one of {sorted(k[11:] for k in results)}")
        value = results[key] if metric not in ("mse", "mae") else -results[key]
        if value > best["value"]:
            best.update(value=value, metrics=results, step=step, waited=0, state={k: v.detach().clone() for k, v in model.state_dict().items()})
        else:
            best["waited"] += 1
        return args["patience"] > 0 and best["waited"] >= args["patience"]

    dist = distributed.setup(args["device"])
    try:
        train(model, task, config, dist, on_evaluate=on_evaluate if validation_examples else None, log=log)
    finally:
        distributed.teardown()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    if dist.is_main:
        os.makedirs(output, exist_ok=True)
        model.save_pretrained(output, safe_serialization=True)
        tokenizer.save_pretrained(output)
        config.save(output)
        summary = {"seed": seed, "metric": metric, "best_step": best["step"], "best_epoch": best["step"] // steps_per_epoch, **{k: v for k, v in best["metrics"].items() if isinstance(v, (int, float))}}
        with open(os.path.join(output, "validation_metrics.json"), "w", encoding="utf-8") as handle:
            json.dump({**summary, "details": best["metrics"]}, handle, indent=2)
        return summary
    return {}


def load_tokenizer_with_prefix_space(name):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name, add_prefix_space=True)


def finetune_tfidf(args: dict, output: str, log) -> dict:
    """The classical baseline (tweetkit.baselines): TF-IDF n-grams, or per-word features for
    tagging, + logistic regression. Deterministic, so one run whatever the seed."""
    import joblib

    from tweetkit import baselines
    from tweetkit import metrics as scorers
    from tweetkit.errors import ConfigError
    from tweetkit.tasks.supervised import score_sequences

    kind = args["task"]
    if kind not in ("classification", "tagging"):
        raise ConfigError("--model tfidf supports --task classification and --task tagging")
    if len(args["labels"]) < 2:
        raise ConfigError(f"--model tfidf needs at least two different labels in --train (found only {args['labels'][0]!r})")
    inputs, targets = [x for x, _ in args["train"]], [y for _, y in args["train"]]
    balanced = kind == "classification" or scorers.is_bio(targets)  # not for POS tags: bench/tagging_baseline.py
    pipeline = baselines.fit(kind, inputs, targets, args["tfidf_c"], balanced)
    os.makedirs(output, exist_ok=True)
    joblib.dump(pipeline, os.path.join(output, "tfidf.joblib"))
    with open(os.path.join(output, "tweetkit_model.json"), "w", encoding="utf-8") as handle:
        json.dump({"type": "tfidf", "task": kind, "labels": args["labels"]}, handle)
    summary: dict = {"model": "tfidf"}
    if args["validation"]:
        inputs, gold = [x for x, _ in args["validation"]], [y for _, y in args["validation"]]
        predicted = baselines.predict(pipeline, kind, inputs)
        if kind == "tagging":
            scores = scorers.tagging_metrics(gold, predicted)
        else:
            scores = score_sequences(kind, [str(label) for label in gold], [label for label, _ in predicted], args["labels"], args["positive_label"])
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
        name = name.strip().replace("-", "_")
        if name not in ("lr", "batch_size", "epochs", "weight_decay", "warmup_ratio", "max_length", "tfidf_c") or not values:
            raise click.BadParameter(f"cannot sweep {part!r} (lr, batch-size, epochs, weight-decay, warmup-ratio, max-length)", param_hint="--sweep")
        cast = int if name in ("batch_size", "epochs", "max_length") else float
        try:
            grid[name] = [cast(v) for v in values.split(",")]
        except ValueError:
            raise click.BadParameter(f"bad value in {part!r}", param_hint="--sweep") from None
    return grid


@click.command(
    "finetune",
    epilog="""\b
Examples:
  tweetkit finetune --model mlm/ --task classification --train sem.train.jsonl --validation sem.dev.jsonl -o sent/
  tweetkit finetune --model mlm/ --task tagging --train wnut17/train.jsonl --validation wnut17/validation.jsonl -o ner/
  tweetkit finetune --model mlm/ --task classification --seeds 1,2,3,4,5 --positive-label irony ... -o irony/
  tweetkit finetune --model tfidf --task classification --train ... --validation ... -o tfidf/
  tweetkit finetune --model mlm/ --sweep "lr=1e-5,3e-5;batch-size=16,32" ... -o sweep/""",
)
@click.option("--model", required=True, help="Model directory or name, or 'tfidf' for the classical baseline (TF-IDF n-grams, or per-word features for tagging, + logistic regression).")
@click.option("--task", "kind", type=click.Choice(TASKS), required=True)
@click.option("--train", "train_path", required=True, type=click.Path(dir_okay=False))
@click.option("--validation", "validation_path", type=click.Path(dir_okay=False), help="Scored every epoch; the best epoch is kept.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False))
@click.option("--text-field", default="text", show_default=True)
@click.option("--label-field", default="label", show_default=True)
@click.option("--tokens-field", default="tokens", show_default=True)
@click.option("--tags-field", default="tags", show_default=True)
@click.option("--lr", type=float, default=1e-5, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--patience", type=click.IntRange(min=0), default=5, show_default=True, help="Stop after N epochs without a better validation metric (0: never).")
@click.option("--metric", help="Validation metric to select on [default: by task: macro_f1, f1_pos, pearson, f1 or accuracy].")
@click.option("--positive-label", help="Report (and select on) the F1 of this class, e.g. irony (SemEval-2018 3A).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Multi-label decision threshold.")
@click.option("--max-length", type=click.IntRange(min=8), default=128, show_default=True)
@click.option("--weight-decay", type=float, default=0.01, show_default=True)
@click.option("--warmup-ratio", type=float, default=0.1, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--seeds", help="Comma-separated seeds: one fine-tune each, in DIR/seed-N, with mean ± std.")
@click.option("--sweep", help='Grid, e.g. "lr=1e-5,3e-5;batch-size=16,32", scored on validation.')
@click.option("--sweep-trials", type=click.IntRange(min=1), help="Random search: this many grid points.")
@click.option("--tfidf-c", type=float, default=1.0, show_default=True, help="Inverse regularisation of the TF-IDF baseline.")
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def command(model, kind, train_path, validation_path, output, text_field, label_field, tokens_field, tags_field, lr, batch_size, epochs, patience, metric, positive_label, threshold, max_length, weight_decay, warmup_ratio, precision, seed, seeds, sweep, sweep_trials, tfidf_c, on_error, device, quiet):
    """Fine-tune a model on a labelled task; keep the best epoch.

    Metrics per epoch go to stdout as JSON lines; the best model is saved as an HF
    directory (AutoModelForSequenceClassification / AutoModelForTokenClassification)
    with id2label/label2id in its config.
    """
    from tweetkit.errors import ConfigError

    log = (lambda message: None) if quiet else (lambda message: print(f"tweetkit finetune: {message}", file=sys.stderr))
    fields = {"text": text_field, "label": label_field, "tokens": tokens_field, "tags": tags_field}
    train_examples = read_examples(train_path, kind, fields, on_error)
    validation_examples = read_examples(validation_path, kind, fields, on_error) if validation_path else []
    if not train_examples:
        raise ConfigError(f"{train_path}: no training examples")
    if validation_path and not validation_examples:
        raise ConfigError(f"{validation_path}: no validation examples")
    labels = label_names_of(kind, train_examples)
    if labels is not None:
        unseen = set(label_names_of(kind, validation_examples) or []) - set(labels)
        if unseen:
            raise ConfigError(f"{validation_path}: labels not in the training data: {', '.join(sorted(unseen)[:5])}")
    if kind == "regression":
        try:
            [float(label) for _, label in train_examples + validation_examples]
        except (TypeError, ValueError):
            raise ConfigError("--task regression needs numeric labels") from None
    from tweetkit import metrics as scorers

    tags_are_bio = kind == "tagging" and scorers.is_bio([tags for _, tags in train_examples])
    metric = metric or scorers.primary_metric(kind, tags_are_bio, positive_label)
    args = dict(model=model, task=kind, train=train_examples, validation=validation_examples, labels=labels, lr=lr, batch_size=batch_size, epochs=epochs, patience=patience, metric=metric, positive_label=positive_label, threshold=threshold, max_length=max_length, weight_decay=weight_decay, warmup_ratio=warmup_ratio, precision=precision, device=device, tfidf_c=tfidf_c)
    log(f"{len(train_examples):,} training and {len(validation_examples):,} validation examples; labels: {len(labels) if labels else 'numeric'}")

    def run(arguments, run_seed, directory):
        if arguments["model"] == "tfidf":
            return finetune_tfidf(arguments, directory, log)
        return finetune_once(arguments, run_seed, directory, log)

    if sweep:
        grid = parse_sweep(sweep)
        points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
        if sweep_trials and sweep_trials < len(points):
            points = random.Random(seed).sample(points, sweep_trials)
        rows = []
        for number, point in enumerate(points):
            result = run({**args, **point}, seed, os.path.join(output, f"sweep-{number}"))
            rows.append({"point": point, **result})
            emit({"sweep_point": number, **point, **{k: v for k, v in result.items() if k.startswith("validation_")}})
        key = f"validation_{metric}"
        best = max(rows, key=lambda r: r.get(key, -math.inf))
        print_sweep_table(rows, key)
        emit({"sweep_best": best["point"], key: best.get(key)})
        return
    if seeds:
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise click.BadParameter("expected integers, e.g. 1,2,3", param_hint="--seeds") from None
        runs = [run(args, s, os.path.join(output, f"seed-{s}")) for s in seed_list]
        summary = mean_std(runs)
        for key, value in summary.items():
            log(f"{key[11:]}: {value['mean']:.4f} ± {value['std']:.4f} over {len(runs)} seeds")
        emit({"seeds": seed_list, "mean_std": summary})
        return
    result = run(args, seed, output)
    emit({"best": result})


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def print_sweep_table(rows: list[dict], key: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep, by {key}")
    names = list(rows[0]["point"])
    for name in names + [key]:
        table.add_column(name)
    for row in sorted(rows, key=lambda r: -r.get(key, -math.inf)):
        table.add_row(*[str(row["point"][n]) for n in names], f"{row.get(key, float('nan')):.4f}")
    Console(file=sys.stderr).print(table)
