"""tweetkit evaluate: score predictions (or predict, then score) with the official metrics."""

from __future__ import annotations

import click

from tweetkit import kinds
from tweetkit.options import (
    ON_ERROR,
    PRECISION,
    QUIET,
    RUNTIME,
    device_option,
    field_option,
    label_map_option,
    log_for,
    threads_option,
)


def print_report(result: dict, kind: str) -> None:
    from rich.table import Table

    from tweetkit.reports import stderr_console

    console = stderr_console()
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
    "Rename labels before scoring, gold and predicted alike, e.g. 'Extremely Positive=Positive,Extremely Negative=Negative': "
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
def command(
    inputs,
    model_path,
    gold_field,
    pred_field,
    text_field,
    positive_label,
    unseen_labels,
    label_map,
    batch_size,
    device,
    on_error,
    mlm,
    top_k,
    seed,
    precision,
    runtime,
    quiet,
):
    """Score a task: one JSON object on stdout, tables and a confusion matrix on stderr.

    Classification: accuracy, macro_f1, macro_recall (SemEval-2017 AvgRec), f1_pn,
    per_class, confusion_matrix, f1_pos with --positive-label.  Tagging: seqeval
    entity F1 for BIO tags and token accuracy.  Multi-label: micro/macro F1, Jaccard.
    Regression: Pearson, Spearman.
    """
    from tweetkit.errors import ConfigError, UsageError
    from tweetkit.records import emit_json

    log = log_for("evaluate", quiet)
    check_inference_flags(model_path, precision, runtime, mlm, device, log)
    if mlm:
        if label_map:
            raise UsageError("--label-map: --mlm scores masked words, not labels")
        if not model_path:
            raise click.UsageError("--mlm needs --model")
        result = evaluate_mlm(
            model_path, inputs, text_field or "text", top_k, seed, batch_size, device, on_error, precision
        )
        emit_json({"task": "mlm", **result})
        if not quiet:
            print_report(result, "masked LM")
        return
    if model_path:
        records, kind, gold_field, pred_field = predicted_records(
            model_path,
            inputs,
            gold_field,
            text_field,
            unseen_labels,
            batch_size,
            device,
            on_error,
            label_map,
            precision,
            runtime,
            log,
        )
    else:
        records, kind, gold_field, pred_field = scored_records(inputs, gold_field, pred_field, on_error)
    if label_map:
        apply_label_map(records, kind, [gold_field, pred_field], label_map, ", ".join(inputs) or "stdin")
    try:
        scores = (
            [r["scores"] for r in records]
            if kind == "multilabel" and not label_map and all(isinstance(r.get("scores"), dict) for r in records)
            else None
        )  # per-label scores name the model's own labels: none once they are mapped
        gold, predicted = [r[gold_field] for r in records], [r[pred_field] for r in records]
        result = kinds.get(kind).score(gold, predicted, None, positive_label, scores)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    emit_json({"task": kind, **result})
    if not quiet:
        print_report(result, kind)


def check_inference_flags(model_path, precision, runtime, mlm, device, log) -> None:
    """--precision and --runtime choose how --model predicts: refused without one; bf16's warning."""
    from tweetkit.errors import UsageError
    from tweetkit.modeling import bf16_warning, resolve_device

    for flag, value, default in (("--precision", precision, "fp32"), ("--runtime", runtime, "torch")):
        if value != default and not model_path:
            raise UsageError(f"{flag} {value} needs --model (without it the predictions are read, not made)")
    if mlm and runtime != "torch":
        raise UsageError(f"--runtime {runtime}: --mlm runs on torch (ONNX Runtime runs classifiers and taggers)")
    if precision == "bf16":
        warning = bf16_warning(precision, resolve_device(device))
        if warning:
            log(warning)


def read(inputs, on_error: str, text_field=None, field_type=str, validate=None) -> list[dict]:
    from tweetkit.errors import ConfigError
    from tweetkit.io import StreamOptions, consume_records

    records = list(
        consume_records(
            "evaluate",
            StreamOptions(inputs=inputs, on_error=on_error, quiet=True),
            text_field,
            field_type,
            validate=validate,
        )
    )
    if not records:
        raise ConfigError("nothing to evaluate (empty input)")
    return records


def apply_label_map(records: list[dict], kind: str, fields: list[str], label_map: dict, where: str) -> None:
    """--label-map on the gold and predicted fields, in place, once its labels are known to occur there."""
    from tweetkit.errors import ConfigError, UsageError
    from tweetkit.metrics import check_label_map

    task = kinds.get(kind)
    if task.label_names([]) is None:
        raise UsageError(f"--label-map: {kind} scores numbers, not labels")
    values = [record[name] for record in records for name in fields]
    present = {str(v) for value in values for v in (value if isinstance(value, list) else [value])}
    try:
        check_label_map(label_map, present, where)
    except ValueError as exc:
        raise ConfigError(f"--label-map: {exc}") from None
    for record in records:
        for name in fields:
            record[name] = task.map_labels(record[name], label_map)


def predicted_records(
    model_path,
    inputs,
    gold_field,
    text_field,
    unseen_labels,
    batch_size,
    device,
    on_error,
    label_map=None,
    precision="fp32",
    runtime="torch",
    log=None,
):
    """Records with the model's predictions added: (records, kind, gold field, pred field).
    With `label_map`, a gold label is known when its mapped name is one of the model's, mapped.
    With `log`, int8's agreement with fp32 is measured and said there."""
    from tweetkit.modeling import int8_agreement, load_for_inference, predict

    loaded = load_for_inference(model_path, device, precision, runtime, log or (lambda message: None))
    task = kinds.get(loaded.kind)
    tagging = task.name == "tagging"
    gold_field, text_field = gold_field or task.gold_field, text_field or task.input_field
    label_map = label_map or {}
    known = {label_map.get(label, label) for label in loaded.labels or []}

    def check(record: dict) -> None:
        if gold_field not in record:
            raise ValueError(f"missing field '{gold_field}'")
        gold = record[gold_field]
        if tagging and (not isinstance(gold, list) or len(gold) != len(record[text_field])):
            raise ValueError(f"field '{gold_field}' is not one tag per word of '{text_field}'")
        if known and unseen_labels == "fail":
            values = gold if isinstance(gold, list) else [gold]
            unknown = [str(v) for v in values if label_map.get(str(v), str(v)) not in known]
            if unknown:
                raise ValueError(
                    f"label '{unknown[0]}' is not one the model knows ({', '.join(sorted(known)[:8])}; --unseen-labels wrong scores it as an error)"
                )

    records = read(inputs, on_error, text_field, list if tagging else str, check)
    pred_field = task.pred_field
    inputs = [r[text_field] for r in records]
    outputs = predict(loaded, inputs, batch_size)
    for record, output in zip(records, outputs):
        if tagging:
            record[pred_field] = output
        else:
            record[pred_field], record["scores"] = output
    agreement = int8_agreement(loaded, inputs, outputs, batch_size) if log else None
    if agreement:
        log(agreement)
    return records, loaded.kind, gold_field, pred_field


def scored_records(inputs, gold_field, pred_field, on_error):
    """Records that carry their predictions: (records, kind, gold field, pred field); the
    fields default from the first record (pred_tags: tagging)."""
    chosen: dict = {}

    def check(record: dict) -> None:
        if not chosen:
            tagging = kinds.get("tagging")
            default = tagging if pred_field is None and tagging.pred_field in record else kinds.get("classification")
            chosen["pred"], chosen["gold"] = pred_field or default.pred_field, gold_field or default.gold_field
        for name in (chosen["gold"], chosen["pred"]):
            if name not in record:
                raise ValueError(f"missing field '{name}'")

    records = read(inputs, on_error, validate=check)
    kind = kinds.of_record(records[0], chosen["gold"], chosen["pred"]).name
    return records, kind, chosen["gold"], chosen["pred"]


def evaluate_mlm(model_path, inputs, field, top_k, seed, batch_size, device, on_error, precision="fp32") -> dict:
    from transformers import AutoModelForMaskedLM

    from tweetkit.errors import ConfigError
    from tweetkit.modeling import (
        check_precision,
        load_pretrained,
        load_tokenizer,
        precision_context,
        quantize_int8,
        resolve_device,
    )
    from tweetkit.tasks.mlm import masked_word_accuracy
    from tweetkit.threads import configure_torch

    try:
        ks = sorted({int(k) for k in top_k.split(",")})
    except ValueError:
        raise click.BadParameter("expected integers, e.g. 1,5,10", param_hint="--top-k") from None
    configure_torch()
    target = resolve_device(device)
    check_precision(precision, target)
    tokenizer = load_tokenizer(model_path)
    model, info = load_pretrained(AutoModelForMaskedLM, model_path, output_loading_info=True)
    if info.get("missing_keys"):
        # A model saved without its MLM head (a sentence encoder, a classifier) would be
        # scored with a random head: a meaningless number that changes from run to run.
        missing = sorted(info["missing_keys"])
        raise ConfigError(
            f"{model_path}: no masked-LM head to evaluate ({len(missing)} weights missing, e.g. {missing[0]}); pretrain it first"
        )
    model.to(target)
    if precision == "int8":
        model = quantize_int8(model, target)
    texts = [r[field] for r in read(inputs, on_error, field)]
    with precision_context(precision, target):
        scores = masked_word_accuracy(model, tokenizer, texts, ks, seed, batch_size)
    return {**scores, "count": len(texts)}
