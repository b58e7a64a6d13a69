"""The task kinds fine-tuning knows, each declared once: how its labels are checked and named,
which HF head it trains, which fields its records and predictions use, how it is scored, its
primary metric and which way that metric is better.

finetune, evaluate, predict, the best-epoch keeper, the linear baseline and `benchmark` ask
this registry; a new task type is one more class here (and its training task in
tasks/supervised.py).
"""

from __future__ import annotations

import json
import math


def _is_label(value) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


class TaskKind:
    """Single-label classification; the other kinds change what differs."""

    name = "classification"
    noun = "classifier"  # in messages: "a classifier with 3 labels"
    problem_type: str | None = "single_label_classification"  # HF config.problem_type
    input_field, gold_field, pred_field = "text", "label", "pred"
    expected = "a string or an integer"
    lower_is_better: frozenset[str] = frozenset()  # metrics where less is better
    linear_baseline = True  # tweetkit.linear fits this kind

    def label_ok(self, label) -> bool:
        return _is_label(label)

    def check(self, record: dict, input_field: str, gold_field: str) -> None:
        """A label of the wrong type is a bad line (with its file and line), not a class named "None"."""
        label = record[gold_field]
        if not self.label_ok(label):
            raise ValueError(f"field '{gold_field}' is not {self.expected} (got {json.dumps(label)[:40]})")

    def label_names(self, golds: list) -> list[str] | None:
        return sorted({str(label) for label in golds})

    def map_labels(self, value, mapping: dict[str, str] | None):
        """A gold or predicted value with --label-map applied once (no chains)."""
        return mapping.get(str(value), value) if mapping else value

    def primary_metric(self, golds: list, positive_label=None) -> str:
        """The validation metric early stopping follows."""
        return "f1_pos" if positive_label is not None else "macro_f1"

    def score(self, gold: list, pred: list, labels=None, positive_label=None, scores=None) -> dict:
        from tweetkit.metrics import classification_metrics

        return classification_metrics(gold, pred, labels, positive_label)

    def head(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def describe(self, labels: int) -> str:
        return f"a {self.noun} with {labels} label{'s' if labels != 1 else ''}"

    def is_better(self, metric: str, new: float, old: float) -> bool:
        return new < old if metric in self.lower_is_better else new > old


class MultiLabel(TaskKind):
    name, noun, problem_type = "multilabel", "multi-label classifier", "multi_label_classification"
    expected = "a list of strings or integers"
    linear_baseline = False

    def label_ok(self, label) -> bool:
        return isinstance(label, list) and all(_is_label(v) for v in label)

    def label_names(self, golds: list) -> list[str]:
        return sorted({str(label) for labels in golds for label in labels})

    def map_labels(self, value, mapping):
        return list(dict.fromkeys(mapping.get(str(label), label) for label in value)) if mapping else value

    def primary_metric(self, golds: list, positive_label=None) -> str:
        return "macro_f1"

    def score(self, gold, pred, labels=None, positive_label=None, scores=None) -> dict:
        from tweetkit.metrics import multilabel_metrics

        return multilabel_metrics(gold, pred, labels, scores)


class Regression(TaskKind):
    name, noun, problem_type = "regression", "regression model", "regression"
    expected = "a finite number"
    lower_is_better = frozenset({"mse", "mae"})
    linear_baseline = False

    def label_ok(self, label) -> bool:
        return isinstance(label, (int, float)) and not isinstance(label, bool) and math.isfinite(label)

    def label_names(self, golds: list) -> None:
        return None

    def map_labels(self, value, mapping):
        return value

    def primary_metric(self, golds: list, positive_label=None) -> str:
        return "pearson"

    def score(self, gold, pred, labels=None, positive_label=None, scores=None) -> dict:
        from tweetkit.metrics import regression_metrics

        return regression_metrics(gold, pred)

    def describe(self, labels: int) -> str:
        return "a regression model"


class Tagging(TaskKind):
    name, noun, problem_type = "tagging", "tagger", None
    input_field, gold_field, pred_field = "tokens", "tags", "pred_tags"
    expected = "a list of strings"

    def check(self, record: dict, input_field: str, gold_field: str) -> None:
        tags, words = record[gold_field], record[input_field]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"field '{gold_field}' is not a list of strings")
        if len(tags) != len(words):
            raise ValueError(f"{len(words)} tokens but {len(tags)} tags")

    def label_names(self, golds: list) -> list[str]:
        return sorted({tag for tags in golds for tag in tags})

    def map_labels(self, value, mapping):
        return [mapping.get(str(tag), tag) for tag in value] if mapping else value  # one tag per word still

    def primary_metric(self, golds: list, positive_label=None) -> str:
        from tweetkit.metrics import is_bio

        return "f1" if is_bio(golds) else "token_accuracy"

    def score(self, gold, pred, labels=None, positive_label=None, scores=None) -> dict:
        from tweetkit.metrics import tagging_metrics

        return tagging_metrics(gold, pred)

    def head(self):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification


KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (TaskKind(), MultiLabel(), Regression(), Tagging())}
NAMES = tuple(KINDS)
BY_PROBLEM_TYPE = {kind.problem_type: kind for kind in KINDS.values() if kind.problem_type}


def get(name: str) -> TaskKind:
    return KINDS[name]


def of_architecture(architecture: str, problem_type: str | None) -> TaskKind | None:
    """The kind an HF fine-tuned model's config declares; None for any other model."""
    if architecture.endswith("ForTokenClassification"):
        return KINDS["tagging"]
    if architecture.endswith("ForSequenceClassification"):
        return BY_PROBLEM_TYPE.get(problem_type, KINDS["classification"])
    return None


def of_record(record: dict, gold_field: str, pred_field: str) -> TaskKind:
    """What a record of gold and predicted values scores as (tagging is known from pred_tags)."""
    if pred_field == KINDS["tagging"].pred_field:
        return KINDS["tagging"]
    if isinstance(record.get(pred_field), list):
        return KINDS["multilabel"]
    if isinstance(record.get(pred_field), float) and not isinstance(record.get(gold_field), str):
        return KINDS["regression"]
    return KINDS["classification"]
