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


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile: the smallest value with at least q% of values at or below it."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil without floats drifting
    return sorted_values[int(rank) - 1]


def _per_class(labels: list, precision, recall, f1, support) -> dict:
    return {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for label, p, r, f, n in zip(labels, precision, recall, f1, support)
    }


def classification_metrics(gold: list, pred: list, labels: list | None = None, positive_label=None) -> dict:
    """scikit-learn underneath; undefined precision or recall (no prediction or no gold of
    a class) counts 0, as the SemEval scorers do."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    if len(gold) != len(pred):
        raise ValueError("gold and predicted labels differ in number")
    gold, pred = [str(g) for g in gold], [str(p) for p in pred]
    labels = [str(label) for label in labels] if labels else sorted({*gold, *pred})
    if not gold:
        return {
            "accuracy": 0.0,
            "macro_f1": 0.0,
            "macro_recall": 0.0,
            "per_class": {},
            "confusion_matrix": {"labels": labels, "matrix": []},
            "count": 0,
        }
    per_class = _per_class(labels, *precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0))
    result = {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels),
        "macro_recall": sum(c["recall"] for c in per_class.values()) / len(labels),
        "per_class": per_class,
        "confusion_matrix": {"labels": labels, "matrix": confusion_matrix(gold, pred, labels=labels).tolist()},
        "count": len(gold),
    }
    if "positive" in per_class and "negative" in per_class:
        result["f1_pn"] = (per_class["positive"]["f1"] + per_class["negative"]["f1"]) / 2
    if positive_label is not None:
        if str(positive_label) not in per_class:
            raise ValueError(f"--positive-label {positive_label!r} is not among the labels {labels}")
        result["f1_pos"] = per_class[str(positive_label)]["f1"]
    return result


def samples_jaccard(y_true, y_pred) -> float:
    """sklearn's jaccard_score(average="samples", zero_division=1), which refuses a label set
    of one label (it takes the matrix for binary targets): the mean over examples of
    |gold & pred| / |gold | pred|, 1 where both are empty."""
    import numpy as np

    true, pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    inter, union = (true & pred).sum(1), (true | pred).sum(1)
    return float(np.where(union == 0, 1.0, inter / np.maximum(union, 1)).mean())


def multilabel_metrics(
    gold: list[list], pred: list[list], labels: list | None = None, scores: list[dict] | None = None
) -> dict:
    """scikit-learn underneath: micro/macro F1, sample-averaged Jaccard (an empty gold and
    prediction agree: 1), exact match, and with per-label scores top-1 accuracy."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    gold_sets, pred_sets = [set(map(str, g)) for g in gold], [set(map(str, p)) for p in pred]
    labels = [str(label) for label in labels] if labels else sorted(set().union(*gold_sets, *pred_sets))
    if not gold_sets or not labels:
        return {
            "micro_f1": 0.0,
            "macro_f1": 0.0,
            "jaccard": 0.0,
            "exact_match": 0.0,
            "per_class": {},
            "count": len(gold_sets),
        }
    binarizer = MultiLabelBinarizer(classes=labels)
    y_true, y_pred = binarizer.fit_transform(gold_sets), binarizer.transform(pred_sets)
    result = {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "jaccard": samples_jaccard(y_true, y_pred),
        "exact_match": float(accuracy_score(y_true, y_pred)),
        "per_class": _per_class(labels, *precision_recall_fscore_support(y_true, y_pred, zero_division=0)),
        "count": len(gold_sets),
    }
    if scores is not None:
        result = {
            "top1_accuracy": sum(max(s, key=s.get) in g for s, g in zip(scores, gold_sets)) / len(gold_sets),
            **result,
        }
    return result


def regression_metrics(gold: list[float], pred: list[float]) -> dict:
    """scipy's Pearson and Spearman (0 where undefined: fewer than two values, or a
    constant side), scikit-learn's MSE and MAE."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    gold, pred = [float(g) for g in gold], [float(p) for p in pred]
    n = len(gold)
    defined = n >= 2 and len(set(gold)) > 1 and len(set(pred)) > 1
    return {
        "pearson": float(pearsonr(gold, pred)[0]) if defined else 0.0,
        "spearman": float(spearmanr(gold, pred)[0]) if defined else 0.0,
        "mse": float(mean_squared_error(gold, pred)) if n else 0.0,
        "mae": float(mean_absolute_error(gold, pred)) if n else 0.0,
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


# --- label maps (`--label-map "Extremely Positive=Positive,Extremely Negative=Negative"`) ----


def parse_label_map(text: str) -> dict[str, str]:
    """'A=B,C=D' as {A: B, C: D}; names are stripped of surrounding spaces.  A pair
    without '=', an empty name or a label mapped twice raises ValueError."""
    mapping: dict[str, str] = {}
    for part in text.split(","):
        source, equals, target = part.partition("=")
        source, target = source.strip(), target.strip()
        if not equals or not source or not target or "=" in target:
            raise ValueError(
                f"expected FROM=TO pairs separated by commas, e.g. 'Extremely Positive=Positive' (got {part.strip()!r})"
            )
        if source in mapping and mapping[source] != target:
            raise ValueError(f"label {source!r} is mapped twice ({mapping[source]!r}, {target!r})")
        mapping[source] = target
    return mapping


def check_label_map(mapping: dict[str, str], present: set[str], where: str) -> None:
    """Refuse a map that names a label never seen in `where`: a typo would otherwise map
    nothing and score (or train on) the unmapped classes silently."""
    import difflib

    for source in mapping:
        if source not in present:
            close = difflib.get_close_matches(source, sorted(present), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"{source!r} is not a label of {where} ({hint}its labels: {', '.join(sorted(present))})")


# --- official scorers of pooled predictions (`tweetkit benchmark` groups) ------------------


def mean_class_f1(gold: list, pred: list, classes: list[str]) -> float:
    """The mean F1 of some classes (scikit-learn's, 0 where undefined), e.g. SemEval-2016
    stance: favor and against, with none left out of the mean but not of the counts."""
    from sklearn.metrics import f1_score

    gold, pred = [str(g) for g in gold], [str(p) for p in pred]
    return float(sum(f1_score(gold, pred, labels=classes, average=None, zero_division=0)) / len(classes))


def stance_favor_against_f1(gold: list, pred: list) -> float:
    """TweetEval's stance score: the five targets' test predictions pooled, then the mean
    F1 of favor and against (cardiffnlp/tweeteval evaluation_script.py)."""
    return mean_class_f1(gold, pred, ["favor", "against"])


# name: (title, scorer(gold, pred) -> float)
OFFICIAL_SCORERS = {
    "stance_favor_against_f1": ("mean F1 of favor and against, targets pooled", stance_favor_against_f1),
}
