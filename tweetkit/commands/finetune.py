"""tweetkit finetune: classification, multi-label, regression and tagging on the shared training core
(the recipe: tweetkit.recipes.finetune)."""

from __future__ import annotations

import click

from tweetkit import kinds
from tweetkit.options import (
    ON_ERROR,
    QUIET,
    config_options,
    field_option,
    label_map_option,
    output_option,
    threads_option,
    train_options,
)
from tweetkit.sweep import DEFAULT_SPACE

TRAIN_FLAGS = [
    "batch_size", "epochs", "max_steps", "lr", "weight_decay", "betas", "eps", "warmup_ratio", "precision",
    "keep_checkpoints", "resume", "overwrite", "seed", "device", "dist_timeout", "compile",
]  # fmt: skip


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
    help="Model directory or name, or 'linear' (alias 'tfidf') for the linear baseline: TF-IDF n-grams, or "
    "per-word features for tagging, + logistic regression.",
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
        "keep_checkpoints": "Keep the N newest epoch checkpoints (with optimizer state) after training; "
        "0: only the best model.",
        "warmup_ratio": "Share of the steps spent in linear warm-up, before linear decay to 0.",
    },
)
@click.option("--seeds", help="Comma-separated seeds: one fine-tune each, in DIR/seed-N, with mean ± std.")
@click.option(
    "--sweep",
    help='Grid in the --search-space grammar, a list of values each, e.g. "lr=1e-5,3e-5;batch-size=16,32", '
    "scored on validation.",
)
@click.option(
    "--sweep-method",
    type=click.Choice(["grid", "random", "tpe"]),
    help="Search (Optuna): the --sweep grid, or random or TPE (Bayesian) samples of --search-space "
    "[default: grid with --sweep].",
)
@click.option(
    "--search-space",
    # The default spaced after each ';' so that the help wraps between parameters, not inside one.
    help="For random/tpe: NAME=lo:hi, log:lo:hi, int:lo:hi or a,b,c, ';'-separated "
    f"[default: {DEFAULT_SPACE.replace(';', '; ')}].",
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
    help="Median pruning: stop a trial whose validation metric is below the median of earlier trials at the "
    "same epoch.",
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
def command(flags, train, model, kind, output, text_field, label_field, tokens_field, tags_field, seeds, sweep,
            sweep_method, search_space, sweep_trials, study_storage, study_name, prune, quiet, **task):  # fmt: skip
    """Fine-tune a model on a labelled task; keep the best epoch.

    Metrics per epoch go to stdout as JSON lines; the best model is saved as an HF
    directory (AutoModelForSequenceClassification / AutoModelForTokenClassification)
    with id2label/label2id in its config.  A checkpoint is written every epoch (and on
    Ctrl-C) for --resume, and removed when the run ends.
    """
    from tweetkit.recipes.finetune import FinetuneConfig, run

    fields = {"text": text_field, "label": label_field, "tokens": tokens_field, "tags": tags_field}
    plan = sweep_plan(sweep, sweep_method, search_space, sweep_trials, study_storage, study_name, prune)
    seed_list = parse_seeds(seeds) if seeds else None
    # `task` holds the flags named as FinetuneConfig's fields: train_path, metric, max_length, ...
    run(FinetuneConfig(model=model, task=kind, output=output, train=train, fields=fields, seeds=seed_list, sweep=plan,
                       flags=flags, quiet=quiet, **task))  # fmt: skip


def sweep_plan(grid_text, method, space_text, trials, storage, name, prune):
    """The sweep the flags ask for (one grammar, tweetkit.sweep's), or None."""
    from tweetkit.recipes.finetune import SweepPlan
    from tweetkit.sweep import parse_grid, parse_space

    grid = parse_grid(grid_text) if grid_text else None
    method = method or ("grid" if grid else None)
    if method == "grid" and not grid:
        raise click.UsageError("--sweep-method grid needs the grid in --sweep")
    if method is None:
        return None
    space = parse_space(space_text or DEFAULT_SPACE) if method in ("random", "tpe") else {}
    return SweepPlan(method, grid, space, trials, storage, name, prune)


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter("expected integers, e.g. 1,2,3", param_hint="--seeds") from None
