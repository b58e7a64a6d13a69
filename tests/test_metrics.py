"""Every scorer value equals scikit-learn / seqeval / scipy to 1e-9, on real label sets."""

import random

import pytest
from conftest import read_jsonl, sliced
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import f1_score as seq_f1
from seqeval.metrics import precision_score as seq_precision
from seqeval.metrics import recall_score as seq_recall
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    jaccard_score,
    precision_recall_fscore_support,
    recall_score,
)
from sklearn.preprocessing import MultiLabelBinarizer

from tweetkit import metrics

TOLERANCE = 1e-9


def noisy(values, choices, rate, seed):
    rng = random.Random(seed)
    return [rng.choice(choices) if rng.random() < rate else v for v in values]


def test_classification_equals_sklearn_and_tweeteval_definitions():
    gold = [r["label"] for r in read_jsonl(sliced("semeval2017/test.jsonl"))]
    labels = sorted(set(gold))
    pred = noisy(gold, labels, 0.4, 1)
    result = metrics.classification_metrics(gold, pred, positive_label="positive")
    assert result["accuracy"] == pytest.approx(accuracy_score(gold, pred), abs=TOLERANCE)
    assert result["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"), abs=TOLERANCE)
    # TweetEval's sentiment score (SemEval-2017 AvgRec) is the macro-averaged recall.
    assert result["macro_recall"] == pytest.approx(recall_score(gold, pred, average="macro"), abs=TOLERANCE)
    assert result["f1_pos"] == pytest.approx(f1_score(gold, pred, labels=["positive"], average="macro"), abs=TOLERANCE)
    assert result["f1_pn"] == pytest.approx(
        f1_score(gold, pred, labels=["positive", "negative"], average="macro"), abs=TOLERANCE
    )
    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, labels=labels)
    for i, label in enumerate(labels):
        got = result["per_class"][label]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx(
            (precision[i], recall[i], f1[i], support[i]), abs=TOLERANCE
        )
    assert result["confusion_matrix"]["matrix"] == confusion_matrix(gold, pred, labels=labels).tolist()


def test_irony_f1_of_the_ironic_class():
    gold = [r["label"] for r in read_jsonl(sliced("tweeteval/irony/test.jsonl"))]
    pred = noisy(gold, ["irony", "non_irony"], 0.3, 2)
    result = metrics.classification_metrics(gold, pred, positive_label="irony")
    # TweetEval's irony score: F1 of the ironic class (SemEval-2018 3A).
    assert result["f1_pos"] == pytest.approx(f1_score(gold, pred, pos_label="irony", average="binary"), abs=TOLERANCE)


def test_tagging_equals_seqeval():
    rows = read_jsonl(sliced("wnut17/test.jsonl"))
    gold = [r["tags"] for r in rows]
    tagset = sorted({t for tags in gold for t in tags})
    pred = [noisy(tags, tagset, 0.1, i) for i, tags in enumerate(gold)]
    result = metrics.tagging_metrics(gold, pred)
    assert result["precision"] == pytest.approx(seq_precision(gold, pred), abs=TOLERANCE)
    assert result["recall"] == pytest.approx(seq_recall(gold, pred), abs=TOLERANCE)
    assert result["f1"] == pytest.approx(seq_f1(gold, pred), abs=TOLERANCE)
    flat_gold, flat_pred = [t for s in gold for t in s], [t for s in pred for t in s]
    assert result["token_accuracy"] == pytest.approx(accuracy_score(flat_gold, flat_pred), abs=TOLERANCE)
    pos = read_jsonl(sliced("ark_pos/test.jsonl"))
    pos_gold = [r["tags"] for r in pos]
    pos_pred = [noisy(tags, sorted({t for s in pos_gold for t in s}), 0.2, i) for i, tags in enumerate(pos_gold)]
    pos_result = metrics.tagging_metrics(pos_gold, pos_pred)
    assert "f1" not in pos_result  # POS tags are not BIO: accuracy is the metric
    assert pos_result["token_accuracy"] == pytest.approx(
        accuracy_score([t for s in pos_gold for t in s], [t for s in pos_pred for t in s]), abs=TOLERANCE
    )


def test_conlleval_counting_of_partial_entities():
    # A partially matched entity is wrong: precision 1/2, recall 1/2.
    result = metrics.tagging_metrics([["B-loc", "I-loc", "O", "B-per"]], [["B-loc", "I-loc", "O", "B-loc"]])
    assert result["f1"] == pytest.approx(0.5) and result["token_accuracy"] == pytest.approx(0.75)


def test_multilabel_equals_sklearn():
    rng = random.Random(3)
    labels = ["anger", "joy", "optimism", "sadness"]
    gold = [[label for label in labels if rng.random() < 0.35] or ["joy"] for _ in range(500)]
    pred = [[label for label in labels if rng.random() < 0.35] for _ in range(500)]
    scores = [{label: rng.random() for label in labels} for _ in range(500)]
    binarizer = MultiLabelBinarizer(classes=labels)
    y_true, y_pred = binarizer.fit_transform(gold), binarizer.transform(pred)
    result = metrics.multilabel_metrics(gold, pred, labels, scores)
    assert result["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"), abs=TOLERANCE)
    assert result["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, average="macro", zero_division=0), abs=TOLERANCE
    )
    assert result["jaccard"] == pytest.approx(
        jaccard_score(y_true, y_pred, average="samples", zero_division=1), abs=TOLERANCE
    )
    top1 = sum(max(s, key=s.get) in g for s, g in zip(scores, gold)) / len(gold)
    assert result["top1_accuracy"] == pytest.approx(top1, abs=TOLERANCE)


def test_regression_equals_scipy():
    rng = random.Random(4)
    gold = [rng.random() for _ in range(300)]
    pred = [g + rng.gauss(0, 0.2) for g in gold]
    pred[:20] = [round(p, 1) for p in pred[:20]]  # ties for Spearman
    result = metrics.regression_metrics(gold, pred)
    assert result["pearson"] == pytest.approx(pearsonr(gold, pred)[0], abs=TOLERANCE)
    assert result["spearman"] == pytest.approx(spearmanr(gold, pred)[0], abs=TOLERANCE)


def test_samples_jaccard_matches_sklearn_and_takes_one_label():
    from sklearn.metrics import jaccard_score

    from tweetkit.metrics import multilabel_metrics, samples_jaccard

    true = [[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1]]
    pred = [[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert samples_jaccard(true, pred) == jaccard_score(true, pred, average="samples", zero_division=1.0) == 0.75
    # finetune checks --metric on the first validation examples: they may hold a single label
    assert multilabel_metrics([["a"], [], ["a"]], [["a"], ["a"], []])["jaccard"] == pytest.approx(1 / 3)
