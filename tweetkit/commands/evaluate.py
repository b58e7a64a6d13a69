"""tweetkit evaluate: score predictions (or predict, then score) with the official metrics;
the recipe: tweetkit.recipes.evaluate."""

from __future__ import annotations

import click

from tweetkit.options import (
    ON_ERROR,
    PRECISION,
    QUIET,
    RUNTIME,
    device_option,
    field_option,
    label_map_option,
    threads_option,
)


@click.command(
    "evaluate",
    epilog="""\b
Examples:
  tweetkit evaluate predicted.jsonl                      # records with label and pred
  tweetkit evaluate --model sent/ semeval2017/test.jsonl # predict, then score
  tweetkit evaluate --model sent/ --runtime onnx --precision int8 semeval2017/test.jsonl
  tweetkit evaluate --model irony/ --positive-label irony irony/test.jsonl
  tweetkit evaluate --model ner/ wnut17/test.jsonl       # tokens/tags: entity F1""",
)
@threads_option
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--model", "model_path", help="Predict with this fine-tuned model first.")
@click.option("--gold-field", default=None, help="[default: label, or tags for tagging]")
@click.option("--pred-field", default=None, help="[default: pred, or pred_tags for tagging]")
@field_option("Input of --model [default: text, or tokens for tagging].", default=None, name="text_field")
@click.option("--positive-label", help="Also report the F1 of this class as f1_pos (SemEval-2018 3A: irony).")
@click.option(
    "--unseen-labels",
    type=click.Choice(["fail", "wrong"]),
    default="fail",
    show_default=True,
    help="With --model, gold labels the model never saw: stop with file:line, or score them as errors.",
)
@label_map_option(
    "Rename labels before scoring, gold and predicted alike, e.g. "
    "'Extremely Positive=Positive,Extremely Negative=Negative': "
    "a 5-class COVID model scored as 3 classes (its prediction mapped, as collapsing its confusion matrix would)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@device_option
@ON_ERROR
@click.option("--mlm", is_flag=True, help="Evaluate a masked LM (--model): one whole word masked per tweet.")
@click.option("--top-k", default="1,5,10", show_default=True, help="With --mlm: the K of top-K accuracy.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --mlm: which word each tweet masks.")
@PRECISION
@RUNTIME
@QUIET
def command(top_k, **settings):
    """Score a task: one JSON object on stdout, tables and a confusion matrix on stderr.

    Classification: accuracy, macro_f1, macro_recall (SemEval-2017 AvgRec), f1_pn,
    per_class, confusion_matrix, f1_pos with --positive-label.  Tagging: seqeval
    entity F1 for BIO tags and token accuracy.  Multi-label: micro/macro F1, Jaccard.
    Regression: Pearson, Spearman.
    """
    from tweetkit.recipes.evaluate import EvaluateConfig, evaluate, print_report
    from tweetkit.records import emit_json

    if settings["mlm"] and not settings["model_path"]:
        raise click.UsageError("--mlm needs --model")
    ks = parse_top_k(top_k) if settings["mlm"] else None
    # the other flags are named as EvaluateConfig's fields: inputs, model_path, gold_field, ...
    config = EvaluateConfig(**{**settings, "inputs": list(settings["inputs"])}, top_k=ks)
    result = evaluate(config)
    emit_json(result)
    if not config.quiet:
        print_report(result, "masked LM" if config.mlm else result["task"])


def parse_top_k(text: str) -> list[int]:
    try:
        return sorted({int(k) for k in text.split(",")})
    except ValueError:
        raise click.BadParameter("expected integers, e.g. 1,5,10", param_hint="--top-k") from None
