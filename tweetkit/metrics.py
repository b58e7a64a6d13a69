"""The scorers, matching the official ones of the tweet benchmarks.

- Classification: accuracy, macro F1, macro recall (SemEval-2017 4A's AvgRec), F1 of
  one class (SemEval-2018 3A: the ironic class) and F1^PN (SemEval-2017: mean F1 of
  positive and negative), per-class figures and the confusion matrix.
- Multi-label: micro/macro F1 and sample-averaged Jaccard (SemEval-2018 E-c).
- Regression: Pearson (SemEval-2018 EI-reg) and Spearman, MSE.
- Tagging: entity precision/recall/F1 with seqeval (conlleval's counting, for
  WNUT-16/17) when tags are BIO, and token accuracy (POS).
- Multi-label: with per-label scores, top-1 accuracy (the best-scored label is gold).
"""

from __future__ import annotations

import math
from collections import Counter


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile: the smallest value with at least q% of values at or below it."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil without floats drifting
    return sorted_values[int(rank) - 1]


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def classification_metrics(gold: list, pred: list, labels: list | None = None, positive_label=None) -> dict:
    if len(gold) != len(pred):
        raise ValueError("gold and predicted labels differ in number")
    labels = list(labels) if labels else sorted({*map(str, gold), *map(str, pred)})
    gold, pred = [str(g) for g in gold], [str(p) for p in pred]
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, pred):
        if g in index and p in index:
            matrix[index[g]][index[p]] += 1
    per_class = {}
    for i, label in enumerate(labels):
        true_positive = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": _f1(precision, recall), "support": support}
    result = {
        "accuracy": sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else 0.0,
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels) if labels else 0.0,
        "macro_recall": sum(c["recall"] for c in per_class.values()) / len(labels) if labels else 0.0,
        "per_class": per_class,
        "confusion_matrix": {"labels": labels, "matrix": matrix},
        "count": len(gold),
    }
    if "positive" in per_class and "negative" in per_class:
        result["f1_pn"] = (per_class["positive"]["f1"] + per_class["negative"]["f1"]) / 2
    if positive_label is not None:
        if str(positive_label) not in per_class:
            raise ValueError(f"--positive-label {positive_label!r} is not among the labels {labels}")
        result["f1_pos"] = per_class[str(positive_label)]["f1"]
    return result


def multilabel_metrics(
    gold: list[list], pred: list[list], labels: list | None = None, scores: list[dict] | None = None
) -> dict:
    gold_sets, pred_sets = [set(map(str, g)) for g in gold], [set(map(str, p)) for p in pred]
    labels = list(labels) if labels else sorted(set().union(*gold_sets, *pred_sets))
    tp, fp, fn = Counter(), Counter(), Counter()
    for g, p in zip(gold_sets, pred_sets):
        for label in p & g:
            tp[label] += 1
        for label in p - g:
            fp[label] += 1
        for label in g - p:
            fn[label] += 1
    per_class = {}
    for label in labels:
        precision = tp[label] / (tp[label] + fp[label]) if tp[label] + fp[label] else 0.0
        recall = tp[label] / (tp[label] + fn[label]) if tp[label] + fn[label] else 0.0
        per_class[label] = {
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "support": tp[label] + fn[label],
        }
    all_tp, all_fp, all_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    micro_p = all_tp / (all_tp + all_fp) if all_tp + all_fp else 0.0
    micro_r = all_tp / (all_tp + all_fn) if all_tp + all_fn else 0.0
    jaccard = [len(g & p) / len(g | p) if g | p else 1.0 for g, p in zip(gold_sets, pred_sets)]
    extra = {}
    if scores is not None:
        extra["top1_accuracy"] = (
            sum(max(s, key=s.get) in g for s, g in zip(scores, gold_sets)) / len(gold_sets) if gold_sets else 0.0
        )
    return {
        **extra,
        "micro_f1": _f1(micro_p, micro_r),
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels) if labels else 0.0,
        "jaccard": sum(jaccard) / len(jaccard) if jaccard else 0.0,
        "exact_match": sum(g == p for g, p in zip(gold_sets, pred_sets)) / len(gold_sets) if gold_sets else 0.0,
        "per_class": per_class,
        "count": len(gold_sets),
    }


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share their mean rank
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(x: list[float], y: list[float]) -> float:
    n = len(x)
    if n < 2:
        return 0.0
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else 0.0


def regression_metrics(gold: list[float], pred: list[float]) -> dict:
    gold, pred = [float(g) for g in gold], [float(p) for p in pred]
    n = len(gold)
    return {
        "pearson": _pearson(gold, pred),
        "spearman": _pearson(_ranks(gold), _ranks(pred)),
        "mse": sum((g - p) ** 2 for g, p in zip(gold, pred)) / n if n else 0.0,
        "mae": sum(abs(g - p) for g, p in zip(gold, pred)) / n if n else 0.0,
        "count": n,
    }


def is_bio(tags) -> bool:
    return any(t[:2] in ("B-", "I-") for sequence in tags for t in sequence)


def tagging_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict:
    if any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("a predicted tag sequence differs in length from its gold sequence")
    tokens = sum(len(g) for g in gold)
    result = {
        "token_accuracy": sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p)) / tokens if tokens else 0.0,
        "count": len(gold),
        "tokens": tokens,
    }
    if is_bio(gold):
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        result.update(
            precision=precision_score(gold, pred, zero_division=0),
            recall=recall_score(gold, pred, zero_division=0),
            f1=f1_score(gold, pred, zero_division=0),
        )  # 0, as conlleval, when nothing is predicted
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
        result["per_type"] = {k: {m: float(v) for m, v in d.items()} for k, d in report.items() if "avg" not in k}
    return result


def primary_metric(kind: str, tags_are_bio: bool = False, positive_label=None) -> str:
    """The validation metric early stopping follows, by task."""
    if kind == "classification":
        return "f1_pos" if positive_label is not None else "macro_f1"
    if kind == "multilabel":
        return "macro_f1"
    if kind == "regression":
        return "pearson"
    return "f1" if tags_are_bio else "token_accuracy"


def score(
    kind: str, gold: list, pred: list, labels: list | None = None, positive_label=None, scores: list[dict] | None = None
) -> dict:
    """The one scorer dispatch: the metrics of a task kind, for finetune's validation,
    the linear baseline and evaluate alike."""
    if kind == "classification":
        return classification_metrics(gold, pred, labels, positive_label)
    if kind == "multilabel":
        return multilabel_metrics(gold, pred, labels, scores)
    if kind == "regression":
        return regression_metrics(gold, pred)
    if kind == "tagging":
        return tagging_metrics(gold, pred)
    raise ValueError(f"unknown task kind {kind!r}")
