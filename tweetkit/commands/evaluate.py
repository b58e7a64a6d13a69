"""tweetkit evaluate: score predictions (or predict, then score) with the official metrics."""

from __future__ import annotations

import json
import sys

import click


def detect_kind(record: dict, gold_field: str, pred_field: str) -> str:
    """What a record of gold and predicted values scores as (tagging is known from pred_tags)."""
    if isinstance(record.get(pred_field), list):
        return "multilabel"
    if isinstance(record.get(pred_field), float) and not isinstance(record.get(gold_field), str):
        return "regression"
    return "classification"


def score(kind: str, gold: list, pred: list, positive_label=None, scores=None) -> dict:
    from tweetkit import metrics as scorers
    from tweetkit.tasks.supervised import score_sequences

    if kind == "tagging":
        return scorers.tagging_metrics(gold, pred)
    return score_sequences(kind, gold, pred, None, positive_label, scores)


def print_report(result: dict, kind: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stderr)
    headline = Table(title=f"{kind}: {result.get('count', 0):,} examples")
    names = [k for k, v in result.items() if isinstance(v, float)]
    for name in names:
        headline.add_column(name, justify="right")
    headline.add_row(*[f"{result[n]:.4f}" for n in names])
    console.print(headline)
    if "per_class" in result:
        table = Table(title="per class")
        for column in ("label", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="right")
        for label, values in result["per_class"].items():
            table.add_row(label, *(f"{values[m]:.4f}" for m in ("precision", "recall", "f1")), str(values["support"]))
        console.print(table)
    if "confusion_matrix" in result:
        labels, matrix = result["confusion_matrix"]["labels"], result["confusion_matrix"]["matrix"]
        table = Table(title="confusion matrix (rows: gold, columns: predicted)")
        table.add_column("")
        for label in labels:
            table.add_column(label, justify="right")
        for label, row in zip(labels, matrix):
            table.add_row(label, *map(str, row))
        console.print(table)


@click.command(
    "evaluate",
    epilog="""\b
Examples:
  tweetkit evaluate predicted.jsonl                      # records with label and pred
  tweetkit evaluate --model sent/ semeval2017/test.jsonl # predict, then score
  tweetkit evaluate --model irony/ --positive-label irony irony/test.jsonl
  tweetkit evaluate --model ner/ wnut17/test.jsonl       # tokens/tags: entity F1""",
)
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--model", "model_path", help="Predict with this fine-tuned model first.")
@click.option("--gold-field", default=None, help="[default: label, or tags for tagging]")
@click.option("--pred-field", default=None, help="[default: pred, or pred_tags for tagging]")
@click.option("--text-field", default=None, help="Input of --model [default: text, or tokens for tagging].")
@click.option("--positive-label", help="Also report the F1 of this class as f1_pos (SemEval-2018 3A: irony).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True)
@click.option("--mlm", is_flag=True, help="Evaluate a masked LM (--model): one whole word masked per tweet.")
@click.option("--top-k", default="1,5,10", show_default=True, help="With --mlm: the K of top-K accuracy.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --mlm: which word each tweet masks.")
@click.option("-q", "--quiet", is_flag=True, help="No table on stderr.")
def command(inputs, model_path, gold_field, pred_field, text_field, positive_label, batch_size, device, on_error, mlm, top_k, seed, quiet):
    """Score a task: one JSON object on stdout, tables and a confusion matrix on stderr.

    Classification: accuracy, macro_f1, macro_recall (SemEval-2017 AvgRec), f1_pn,
    per_class, confusion_matrix, f1_pos with --positive-label.  Tagging: seqeval
    entity F1 for BIO tags and token accuracy.  Multi-label: micro/macro F1, Jaccard.
    Regression: Pearson, Spearman.
    """
    from tweetkit.errors import ConfigError
    from tweetkit.io import StreamOptions, consume_records

    if mlm:
        if not model_path:
            raise click.UsageError("--mlm needs --model")
        result = evaluate_mlm(model_path, inputs, text_field or "text", top_k, seed, batch_size, device, on_error)
        sys.stdout.write(json.dumps({"task": "mlm", **result}) + "\n")
        if not quiet:
            print_report(result, "masked LM")
        return
    loaded = None
    if model_path:
        from tweetkit.models import load_model

        loaded = load_model(model_path, device)
    tagging = loaded is not None and loaded.kind == "tagging"
    gold_field = gold_field or ("tags" if tagging else "label")
    if loaded is not None:
        text_field = text_field or ("tokens" if tagging else "text")
        pred_field = "pred_tags" if tagging else "pred"
    options = StreamOptions(inputs=inputs, on_error=on_error, quiet=True)
    input_field = text_field if loaded is not None else None
    records = list(consume_records("evaluate", options, input_field, list if tagging else str, required=[] if loaded is None and gold_field == "label" else [gold_field]))
    if not records:
        raise ConfigError("nothing to evaluate (empty input)")
    if loaded is not None:
        from tweetkit.models import predict

        if loaded.kind in ("classification", "multilabel", "tagging"):
            known = set(loaded.labels)
            for number, record in enumerate(records, 1):
                gold = record[gold_field]
                values = gold if isinstance(gold, list) else [gold]
                unknown = [str(v) for v in values if str(v) not in known]
                if unknown:
                    raise ConfigError(f"record {number}: label '{unknown[0]}' is not one the model knows ({', '.join(sorted(known)[:8])})")

        outputs = predict(loaded, [r[text_field] for r in records], batch_size)
        for record, output in zip(records, outputs):
            if tagging:
                record[pred_field] = output
            else:
                record[pred_field], record["scores"] = output
        kind = loaded.kind
    else:
        if pred_field is None:
            pred_field = "pred_tags" if "pred_tags" in records[0] else "pred"
            if "pred_tags" in records[0] and gold_field == "label":
                gold_field = "tags"
        missing = next((i for i, r in enumerate(records) if pred_field not in r or gold_field not in r), None)
        if missing is not None:
            raise ConfigError(f"record {missing + 1} has no '{pred_field}' or '{gold_field}' field")
        kind = "tagging" if pred_field == "pred_tags" else detect_kind(records[0], gold_field, pred_field)
    try:
        scores = [r["scores"] for r in records] if kind == "multilabel" and all(isinstance(r.get("scores"), dict) for r in records) else None
        result = score(kind, [r[gold_field] for r in records], [r[pred_field] for r in records], positive_label, scores)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    sys.stdout.write(json.dumps({"task": kind, **result}) + "\n")
    if not quiet:
        print_report(result, kind)


def evaluate_mlm(model_path, inputs, field, top_k, seed, batch_size, device, on_error) -> dict:
    import torch
    from transformers import AutoModelForMaskedLM

    from tweetkit.errors import ConfigError
    from tweetkit.io import StreamOptions, consume_records
    from tweetkit.models import quiet_transformers
    from tweetkit.tasks.mlm import masked_word_accuracy
    from tweetkit.tokenizers import load_tokenizer

    try:
        ks = sorted({int(k) for k in top_k.split(",")})
    except ValueError:
        raise click.BadParameter("expected integers, e.g. 1,5,10", param_hint="--top-k") from None
    quiet_transformers()
    tokenizer = load_tokenizer(model_path)
    try:
        model = AutoModelForMaskedLM.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {model_path}: {str(exc).splitlines()[0]}") from None
    model.to(torch.device("cuda" if (device == "auto" and torch.cuda.is_available()) or device == "cuda" else "cpu"))
    texts = [r[field] for r in consume_records("evaluate", StreamOptions(inputs=inputs, on_error=on_error, quiet=True), field)]
    if not texts:
        raise ConfigError("nothing to evaluate (empty input)")
    return {**masked_word_accuracy(model, tokenizer, texts, ks, seed, batch_size), "count": len(texts)}
