"""scripts/repro.py end to end on slices of the shared datasets: every step a real tweetkit
command (langid, normalize, dedup, split, train-bpe, pretrain, finetune, evaluate), tiny
schedules, then a rerun that must resume from what is there and change nothing."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, read_jsonl, shared_data

sys.path.insert(0, str(ROOT / "scripts"))
import repro  # noqa: E402

# Enough lines for every label, a carved validation split and a few packed rows.
SLICES = {
    **{source: 150 for source in repro.CORPUS_SOURCES},
    **{test: 80 for test in repro.TEST_SETS},
    "semeval2017/train.jsonl": 300,
    "wnut17/train.jsonl": 150,
    "wnut17/validation.jsonl": 50,
}
SETTINGS = [
    "--seeds",
    "1,2",
    "--epochs",
    "1",
    "--tiny-epochs",
    "1",
    "--train-limit",
    "120",
    "--pretrain-steps",
    "2",
    "--head-steps",
    "1",
    "--tiny-steps",
    "2",
    "--pretrain-batch-size",
    "4",
    "--extend-pieces",
    "100",
    "--tiny-vocab-size",
    "800",
]


@pytest.fixture(scope="module")
def sliced_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for relative, lines in SLICES.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(shared_data() / relative, encoding="utf-8") as source:
            kept = [line for _, line in zip(range(lines), source)]
            if relative == "wnut17/train.jsonl":
                # finetune refuses validation tags that training lacks: add a sentence for each rare tag.
                seen = {tag for line in kept for tag in json.loads(line)["tags"]}
                for line in source:
                    if set(json.loads(line)["tags"]) - seen:
                        kept.append(line)
                        seen |= set(json.loads(line)["tags"])
        target.write_text("".join(kept), encoding="utf-8")
    return root


def reproduce(data, work, results, target, rows, *extra):
    command = [
        sys.executable,
        str(ROOT / "scripts/repro.py"),
        target,
        "--data",
        str(data),
        "--work",
        str(work),
        "--results",
        str(results),
        "--rows",
        rows,
        *SETTINGS,
        *extra,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_classification_and_tagging_targets_run_and_resume(sliced_data, tmp_path):
    work, results = tmp_path / "work", tmp_path / "results"
    reproduce(sliced_data, work, results, "semeval17", "tfidf,minilm,minilm-tweets,minilm-tweets-warmhead,tiny")
    semeval = json.loads((results / "semeval17.json").read_text())
    assert [r["row"] for r in semeval["rows"]] == ["tfidf", "minilm", "minilm-tweets", "minilm-tweets-warmhead", "tiny"]
    for row in semeval["rows"]:
        recall = row["test"]["macro_recall"]
        assert len(recall["values"]) == (1 if row["row"] == "tfidf" else 2) and all(
            0 <= v <= 100 for v in recall["values"]
        )
        matrix = row["confusion_matrix"]
        assert matrix["labels"] == ["negative", "neutral", "positive"]
        assert sum(map(sum, matrix["matrix"])) == semeval["data"]["test"] * len(
            recall["values"]
        )  # every test tweet, every seed
    # No validation split in SemEval-2017: `split` carves one from train, and train is capped.
    assert semeval["data"]["train"] <= 120 and semeval["data"]["validation"] >= 1 and semeval["data"]["test"] == 80

    # The corpus: every source line in, and no tweet left that equals a (normalised) test tweet.
    corpus = semeval["corpus"]
    assert corpus["tweets_in"] == sum(SLICES[s] for s in repro.CORPUS_SOURCES)
    assert (
        0
        < corpus["tweets"]
        == len(read_jsonl(work / "corpus.jsonl"))
        <= corpus["after_langid_normalize_dedup"] - corpus["removed_as_test_duplicates"]
    )
    tests = {r["text"] for r in read_jsonl(work / "tests.jsonl")}
    assert not tests & {r["text"] for r in read_jsonl(work / "corpus.jsonl")}

    # Tagging: (a) is the per-word linear tagger; (c) and (d) reuse the pretrained models built above.
    proc = reproduce(
        sliced_data, work, results, "wnut17", "tfidf,minilm,minilm-tweets,tiny", "--train-limit", "0"
    )  # every tag in train
    assert "-m tweetkit pretrain" not in proc.stderr and "-m tweetkit train-bpe" not in proc.stderr
    wnut = json.loads((results / "wnut17.json").read_text())
    assert [r["row"] for r in wnut["rows"]] == ["tfidf", "minilm", "minilm-tweets", "tiny"]
    assert wnut["rows"][0]["name"] == "(a) word features + logistic regression" and len(wnut["rows"][0]["seeds"]) == 1
    assert all(0 <= v <= 100 for r in wnut["rows"] for v in r["test"]["f1"]["values"])

    # A rerun finds every output in place: no command runs, and the results are the same.
    proc = reproduce(sliced_data, work, results, "semeval17", "tfidf,minilm,minilm-tweets,minilm-tweets-warmhead,tiny")
    assert "$ " not in proc.stderr
    again = json.loads((results / "semeval17.json").read_text())
    assert [r["test"] for r in again["rows"]] == [r["test"] for r in semeval["rows"]]

    # RESULTS.md from both, with the paired (c) − (b) statement.
    output = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/results_md.py"), "--results", str(results), "-o", str(output)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 0, proc.stderr
    text = output.read_text(encoding="utf-8")
    assert "## SemEval-2017 4A sentiment" in text and "## WNUT-17 NER" in text and "(c) − (b) = " in text


def test_summed_confusion_aligns_labels_by_name():
    first = {"confusion_matrix": {"labels": ["a", "b"], "matrix": [[3, 1], [0, 2]]}}
    second = {"confusion_matrix": {"labels": ["b", "c"], "matrix": [[1, 1], [0, 5]]}}  # a seed that never predicted "a"
    assert repro.summed_confusion([first, second]) == {
        "labels": ["a", "b", "c"],
        "matrix": [[3, 1, 0], [0, 3, 1], [0, 0, 5]],
        "seeds": 2,
    }
    assert repro.summed_confusion([{"f1": 0.5}]) is None


@pytest.mark.slow  # the COVID tweets state no licence, so no slice of them is committed: ../shared/data only
def test_covid_reports_three_class_accuracy_beside_the_seed_paper(sliced_data, tmp_path):
    """The same models scored again with `evaluate --label-map`: 5 classes merged to the seed's 3."""
    results = tmp_path / "results"
    reproduce(sliced_data, tmp_path / "work", results, "covid", "tfidf")
    covid = json.loads((results / "covid.json").read_text())
    row = covid["rows"][0]
    five, three = row["test"]["accuracy"]["values"][0], row["test"]["accuracy_3class"]["values"][0]
    assert 0 <= five <= three <= 100 and "macro_f1_3class" in row["test"]
    work = tmp_path / "work" / "covid" / "n120"
    mapped = json.loads((work / "tfidf.test-3class.json").read_text())
    assert mapped["confusion_matrix"]["labels"] == ["Negative", "Neutral", "Positive"]
    assert round(100 * mapped["accuracy"], 2) == three
    output = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/results_md.py"), "--results", str(results), "-o", str(output)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 0, proc.stderr
    text = output.read_text(encoding="utf-8")
    assert "3-class accuracy" in text and "| *published:* BERT (seed paper) |  |  |  | *88.3* |" in text
