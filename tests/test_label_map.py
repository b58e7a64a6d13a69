"""--label-map: gold labels renamed as finetune and evaluate read them, and a 4-class model's
predictions scored as 3 classes by evaluate (what collapsing its confusion matrix gives)."""

import json

import pytest
from conftest import ROOT, jsonl, read_jsonl, run_cli, sliced

from tweetkit.kinds import get
from tweetkit.metrics import parse_label_map

# TweetEval's emotions: optimism read as joy.
THREE = "optimism=joy"
MERGED = {"optimism": "joy"}
TEST_TWEETS = 200


@pytest.fixture(scope="module")
def emotion(tmp_path_factory):
    root = tmp_path_factory.mktemp("emotion")
    (root / "train.jsonl").write_bytes(jsonl(*read_jsonl(sliced("tweeteval/emotion/train.jsonl"), 400)))
    (root / "test.jsonl").write_bytes(jsonl(*read_jsonl(sliced("tweeteval/emotion/test.jsonl"), TEST_TWEETS)))
    four = run_cli(["finetune", "--model", "linear", "--task", "classification", "--train", str(root / "train.jsonl"),
                    "-o", str(root / "four"), "-q"])  # fmt: skip
    assert four.exit_code == 0, four.stderr
    return root


def test_parse_and_map():
    assert parse_label_map(" optimism = joy ") == MERGED
    assert parse_label_map(" Extremely Positive = Positive ,Extremely Negative=Negative") == {
        "Extremely Positive": "Positive",
        "Extremely Negative": "Negative",
    }
    map_labels = get("classification").map_labels
    assert map_labels("optimism", MERGED) == "joy" and map_labels("anger", MERGED) == "anger"
    assert get("multilabel").map_labels(["optimism", "joy"], MERGED) == ["joy"]  # a set: merged
    assert get("tagging").map_labels(["optimism", "joy"], MERGED) == ["joy", "joy"]  # per word
    assert map_labels(1, {"1": "one"}) == "one" and map_labels("a", {}) == "a"
    assert parse_label_map("a=b,b=c") == {"a": "b", "b": "c"}  # applied once: a -> b, not c
    assert map_labels("a", parse_label_map("a=b,b=c")) == "b"
    for bad in ("Positive", "=Positive", "a=", "a=b=c", "a=b,,c=d", "a=b,a=c"):
        with pytest.raises(ValueError):
            parse_label_map(bad)


@pytest.mark.parametrize("command", ["finetune", "evaluate"])
@pytest.mark.parametrize("bad", ["Positive", "a=b,a=c", "a=b,"])
def test_bad_syntax_is_a_one_line_usage_error(emotion, command, bad):
    args = (
        ["finetune", "--model", "linear", "--task", "classification", "--train", str(emotion / "train.jsonl"), "-o",
         str(emotion / "never")]
        if command == "finetune"
        else ["evaluate", "--model", str(emotion / "four"), str(emotion / "test.jsonl")]
    )  # fmt: skip
    result = run_cli([*args, "--label-map", bad])
    assert result.exit_code == 2, result.stderr
    assert (
        result.stderr.strip().count("\n") == 0 and "--label-map" in result.stderr and "Traceback" not in result.stderr
    )
    assert not (emotion / "never").exists()


def test_finetune_learns_the_mapped_labels(emotion, tmp_path):
    result = run_cli(["finetune", "--model", "linear", "--task", "classification",
                      "--train", str(emotion / "train.jsonl"), "--validation", str(emotion / "test.jsonl"),
                      "-o", str(tmp_path / "three"), "--label-map", THREE, "-q"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    info = json.loads((tmp_path / "three" / "tweetkit_model.json").read_text())
    assert info["labels"] == ["anger", "joy", "sadness"]
    # Its test set scored with the same map: gold read as 3 classes; without the map, 4-class gold is unseen.
    mapped = run_cli(
        ["evaluate", "-q", "--model", str(tmp_path / "three"), "--label-map", THREE, str(emotion / "test.jsonl")]
    )
    assert mapped.exit_code == 0, mapped.stderr
    assert json.loads(mapped.stdout)["confusion_matrix"]["labels"] == ["anger", "joy", "sadness"]
    unmapped = run_cli(["evaluate", "-q", "--model", str(tmp_path / "three"), str(emotion / "test.jsonl")])
    assert unmapped.exit_code == 1 and "optimism" in unmapped.stderr
    regression = run_cli(["finetune", "--model", "linear", "--task", "regression",
                          "--train", str(emotion / "train.jsonl"), "-o", str(tmp_path / "r"),
                          "--label-map", THREE])  # fmt: skip
    assert regression.exit_code == 2 and "--label-map" in regression.stderr


def test_evaluate_scores_a_four_class_model_as_three_classes(emotion):
    four = run_cli(["evaluate", "-q", "--model", str(emotion / "four"), str(emotion / "test.jsonl")])
    three = run_cli(
        ["evaluate", "-q", "--model", str(emotion / "four"), "--label-map", THREE, str(emotion / "test.jsonl")]
    )
    assert four.exit_code == three.exit_code == 0, three.stderr
    four, three = json.loads(four.stdout), json.loads(three.stdout)
    assert four["confusion_matrix"]["labels"] == ["anger", "joy", "optimism", "sadness"]
    assert three["confusion_matrix"]["labels"] == ["anger", "joy", "sadness"]
    # The 3-class matrix is the 4-class one with merged rows and columns added up.
    labels, matrix = four["confusion_matrix"]["labels"], four["confusion_matrix"]["matrix"]
    index = {name: i for i, name in enumerate(three["confusion_matrix"]["labels"])}
    collapsed = [[0] * 3 for _ in range(3)]
    for g, gold in enumerate(labels):
        for p, predicted in enumerate(labels):
            collapsed[index[MERGED.get(gold, gold)]][index[MERGED.get(predicted, predicted)]] += matrix[g][p]
    assert three["confusion_matrix"]["matrix"] == collapsed
    assert three["accuracy"] == pytest.approx(sum(collapsed[i][i] for i in range(3)) / TEST_TWEETS, abs=1e-12)
    assert three["accuracy"] > four["accuracy"]  # merging never turns a right answer wrong; here it fixes some
    # predict | evaluate --label-map maps the predictions in the file the same way.
    predicted = run_cli(["predict", "--model", str(emotion / "four")], stdin=(emotion / "test.jsonl").read_bytes())
    piped = run_cli(["evaluate", "-q", "--label-map", THREE], stdin=predicted.stdout)
    assert json.loads(piped.stdout) == three


def test_label_map_from_a_config_file(emotion, tmp_path):
    config = tmp_path / "flags.json"
    config.write_text(json.dumps({"label_map": MERGED}))
    shown = run_cli(["finetune", "--config", str(config), "--model", "linear", "--task", "classification", "--train",
                     str(emotion / "train.jsonl"), "-o", str(tmp_path / "o"), "--print-config"])  # fmt: skip
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["label_map"] == MERGED


def test_a_mapped_label_that_never_occurs_is_an_error(tmp_path):
    train = str(ROOT / "examples" / "sentiment_train.jsonl")
    tuned = run_cli(["finetune", "--model", "linear", "--task", "classification", "--train", train,
                     "-o", str(tmp_path / "m"), "--label-map", "negative=bad,postive=good"])  # fmt: skip
    assert tuned.exit_code == 1 and tuned.stderr == (
        f"tweetkit finetune: --label-map: 'postive' is not a label of {train} "
        "(did you mean 'positive'? its labels: negative, neutral, positive)\n"
    )
    assert not (tmp_path / "m").exists()
    scored = jsonl(*[{"label": r["label"], "pred": "neutral"} for r in read_jsonl(train, 50)])
    evaluated = run_cli(["evaluate", "--label-map", "Extremely Positve=positive"], stdin=scored)
    assert evaluated.exit_code == 1 and evaluated.stderr == (
        "tweetkit evaluate: --label-map: 'Extremely Positve' is not a label of stdin "
        "(its labels: negative, neutral, positive)\n"
    )
