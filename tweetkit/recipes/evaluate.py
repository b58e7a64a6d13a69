"""The evaluation recipe: score predictions (or predict with a model, then score) with each task
kind's official metrics, or a masked LM on one whole word per tweet (`tweetkit evaluate`)."""

from __future__ import annotations

from dataclasses import dataclass

from tweetkit import kinds


@dataclass
class EvaluateConfig:
    """One `evaluate` job: what to score, and with which model if the predictions are to be made."""

    inputs: list[str]  # JSONL files; none: stdin
    model_path: str | None = None  # a fine-tuned model (or with mlm, a masked LM) to predict with first
    gold_field: str | None = None  # [default: the kind's: label, or tags for tagging]
    pred_field: str | None = None  # [default: the kind's: pred, or pred_tags for tagging]
    text_field: str | None = None  # the model's input [default: text, or tokens for tagging]
    positive_label: str | None = None
    unseen_labels: str = "fail"  # gold labels the model never saw: fail | wrong
    label_map: dict | None = None  # labels renamed before scoring, gold and predicted alike
    batch_size: int = 64
    device: str = "auto"
    on_error: str = "fail"
    mlm: bool = False  # score a masked LM: one whole word masked per tweet
    top_k: list[int] | None = None  # with mlm: the K of top-K accuracy
    seed: int = 0  # with mlm: which word each tweet masks
    precision: str = "fp32"
    runtime: str = "torch"  # how --model predicts: torch, or onnx (ONNX Runtime)
    quiet: bool = False


def evaluate(config: EvaluateConfig) -> dict:
    """{"task": kind, **scores}: the one JSON object `evaluate` prints."""
    from tweetkit.errors import UsageError
    from tweetkit.reports import log_for

    log = log_for("evaluate", config.quiet)
    check_inference_flags(config, log)
    if config.mlm:
        if config.label_map:
            raise UsageError("--label-map: --mlm scores masked words, not labels")
        return {"task": "mlm", **evaluate_mlm(config)}
    if config.model_path:
        records, kind, gold_field, pred_field = predicted_records(config, None if config.quiet else log)
    else:
        records, kind, gold_field, pred_field = scored_records(config)
    if config.label_map:
        where = ", ".join(config.inputs) or "stdin"
        apply_label_map(records, kind, [gold_field, pred_field], config.label_map, where)
    return {"task": kind, **score(records, kind, gold_field, pred_field, config)}


def check_inference_flags(config: EvaluateConfig, log) -> None:
    """--precision and --runtime choose how --model predicts: refused without one; bf16's warning."""
    from tweetkit.errors import UsageError
    from tweetkit.modeling import bf16_warning, resolve_device

    for flag, value, default in (("--precision", config.precision, "fp32"), ("--runtime", config.runtime, "torch")):
        if value != default and not config.model_path:
            raise UsageError(f"{flag} {value} needs --model (without it the predictions are read, not made)")
    if config.mlm and config.runtime != "torch":
        raise UsageError(f"--runtime {config.runtime}: --mlm runs on torch (ONNX Runtime runs classifiers and taggers)")
    if config.precision == "bf16":
        warning = bf16_warning(config.precision, resolve_device(config.device))
        if warning:
            log(warning)


def score(records: list[dict], kind: str, gold_field: str, pred_field: str, config: EvaluateConfig) -> dict:
    """The kind's scores of the records' predictions against their gold labels."""
    from tweetkit.errors import ConfigError

    try:
        scores = (
            [r["scores"] for r in records]
            if kind == "multilabel" and not config.label_map and all(isinstance(r.get("scores"), dict) for r in records)
            else None
        )  # per-label scores name the model's own labels: none once they are mapped
        gold, predicted = [r[gold_field] for r in records], [r[pred_field] for r in records]
        return kinds.get(kind).score(gold, predicted, None, config.positive_label, scores)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


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


def gold_check(config: EvaluateConfig, gold_field: str, text_field: str, tagging: bool, known: set):
    """The check of each record's gold field before the model predicts it: present, one tag
    per word for tagging, and (unless --unseen-labels wrong) a label the model knows."""
    label_map = config.label_map or {}

    def check(record: dict) -> None:
        if gold_field not in record:
            raise ValueError(f"missing field '{gold_field}'")
        gold = record[gold_field]
        if tagging and (not isinstance(gold, list) or len(gold) != len(record[text_field])):
            raise ValueError(f"field '{gold_field}' is not one tag per word of '{text_field}'")
        if known and config.unseen_labels == "fail":
            values = gold if isinstance(gold, list) else [gold]
            unknown = [str(v) for v in values if label_map.get(str(v), str(v)) not in known]
            if unknown:
                raise ValueError(
                    f"label '{unknown[0]}' is not one the model knows ({', '.join(sorted(known)[:8])}; "
                    "--unseen-labels wrong scores it as an error)"
                )

    return check


def predicted_records(config: EvaluateConfig, log=None):
    """Records with the model's predictions added: (records, kind, gold field, pred field).
    With --label-map, a gold label is known when its mapped name is one of the model's, mapped.
    With `log`, int8's agreement with fp32 is measured and said there."""
    from tweetkit.modeling import int8_agreement, load_for_inference, predict

    loaded = load_for_inference(
        config.model_path, config.device, config.precision, config.runtime, log or (lambda message: None)
    )
    task = kinds.get(loaded.kind)
    tagging = task.name == "tagging"
    gold_field, text_field = config.gold_field or task.gold_field, config.text_field or task.input_field
    label_map = config.label_map or {}
    known = {label_map.get(label, label) for label in loaded.labels or []}
    check = gold_check(config, gold_field, text_field, tagging, known)
    records = read(config.inputs, config.on_error, text_field, list if tagging else str, check)
    pred_field = task.pred_field
    inputs = [r[text_field] for r in records]
    outputs = predict(loaded, inputs, config.batch_size)
    for record, output in zip(records, outputs):
        if tagging:
            record[pred_field] = output
        else:
            record[pred_field], record["scores"] = output
    agreement = int8_agreement(loaded, inputs, outputs, config.batch_size) if log else None
    if agreement:
        log(agreement)
    return records, loaded.kind, gold_field, pred_field


def scored_records(config: EvaluateConfig):
    """Records that carry their predictions: (records, kind, gold field, pred field); the
    fields default from the first record (pred_tags: tagging)."""
    chosen: dict = {}
    gold_field, pred_field = config.gold_field, config.pred_field

    def check(record: dict) -> None:
        if not chosen:
            tagging = kinds.get("tagging")
            default = tagging if pred_field is None and tagging.pred_field in record else kinds.get("classification")
            chosen["pred"], chosen["gold"] = pred_field or default.pred_field, gold_field or default.gold_field
        for name in (chosen["gold"], chosen["pred"]):
            if name not in record:
                raise ValueError(f"missing field '{name}'")

    records = read(config.inputs, config.on_error, validate=check)
    kind = kinds.of_record(records[0], chosen["gold"], chosen["pred"]).name
    return records, kind, chosen["gold"], chosen["pred"]


def evaluate_mlm(config: EvaluateConfig) -> dict:
    """Top-K accuracy and pseudo-perplexity of a masked LM on one whole word masked per tweet."""
    from tweetkit.modeling import load_masked_lm, precision_context
    from tweetkit.tasks.mlm import masked_word_accuracy

    model, tokenizer, target = load_masked_lm(config.model_path, config.device, config.precision)
    field = config.text_field or "text"
    texts = [r[field] for r in read(config.inputs, config.on_error, field)]
    with precision_context(config.precision, target):
        scores = masked_word_accuracy(model, tokenizer, texts, config.top_k, config.seed, config.batch_size)
    return {**scores, "count": len(texts)}


def print_report(result: dict, title: str) -> None:
    """The scores as tables on stderr: the headline figures, per class, and the confusion matrix."""
    from rich.table import Table

    from tweetkit.reports import stderr_console

    console = stderr_console()
    headline = Table(title=f"{title}: {result.get('count', 0):,} examples")
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
