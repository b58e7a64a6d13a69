"""A model directory that does not fit the command: one line saying what it is and why,
before any data is read; never HF's raw or cut-short messages."""

import pytest
from conftest import ROOT, jsonl, make_micro_model, make_tokenizer, read_jsonl, run_cli

TWEETS = read_jsonl(ROOT / "examples" / "sentiment_train.jsonl", 96)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    make_tokenizer(root, [r["text"] for r in TWEETS], 300)
    make_micro_model(root)
    (root / "three.jsonl").write_bytes(jsonl(*TWEETS))  # negative, neutral, positive
    (root / "two.jsonl").write_bytes(jsonl(*[{"text": r["text"], "label": str(len(r["text"]) % 2)} for r in TWEETS]))
    tags = [{"tokens": r["text"].split()[:8], "tags": ["O", "B-X"] * 4} for r in TWEETS if len(r["text"].split()) >= 8]
    (root / "tags.jsonl").write_bytes(jsonl(*tags))
    for model, task, data, out in [("mlm", "classification", "three", "clf"), ("linear", "tagging", "tags", "lintag")]:
        argv = ["finetune", "--model", str(root / model), "--task", task, "--train", str(root / f"{data}.jsonl"),
                "-o", str(root / out), "--epochs", "1", "-q"]  # fmt: skip
        done = run_cli([a.replace(str(root / "linear"), "linear") for a in argv])
        assert done.exit_code == 0, done.stderr
    return root


def error_of(*argv) -> str:
    result = run_cli([str(a) for a in argv])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr.strip()


def test_finetune_names_what_the_model_is(models):
    clf, lintag = models / "clf", models / "lintag"
    two = ["--task", "classification", "--train", models / "two.jsonl", "-o", models / "out", "-q"]
    assert error_of("finetune", "--model", clf, *two) == (
        f"tweetkit finetune: cannot load model {clf} (a classifier with 3 labels): "
        "its head does not fit this data's 2 labels"
    )
    assert error_of("finetune", "--model", lintag, *two) == (
        f"tweetkit finetune: --model {lintag}: a linear tagger with 2 labels, not a transformer to fine-tune "
        "(--model linear trains a new linear one)"
    )


def test_finetune_checks_the_model_before_reading_data(models, tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "fine", "label": "a"}\nnot json\n')
    missing = tmp_path / "nope"
    argv = [
        "finetune",
        "--model",
        f"{missing}/",
        "--task",
        "classification",
        "--train",
        tmp_path / "bad.jsonl",
        "-o",
        tmp_path / "o",
    ]
    assert error_of(*argv) == f"tweetkit finetune: cannot load model {missing}/: no such directory"


def test_inference_commands_name_what_the_model_is(models):
    assert error_of("predict", "--model", models / "mlm", models / "three.jsonl") == (
        f"tweetkit predict: {models / 'mlm'}: a masked language model, not a fine-tuned classifier or tagger"
    )
    assert error_of("evaluate", "--mlm", "--model", models / "lintag", models / "three.jsonl") == (
        f"tweetkit evaluate: cannot load tokenizer {models / 'lintag'}: "
        "a linear tagger with 2 labels, with no tokenizer"
    )
