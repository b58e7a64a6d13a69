"""Small things a new user meets: help texts that name only real flags and show defaults
once, paths checked before work, commands that agree on defaults, files others can read,
"did you mean", and exit 141 when stderr's reader goes away."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SUBPROCESS_ENV, jsonl, make_micro_model, make_tokenizer, read_jsonl, run_cli

from tweetkit.sweep import DEFAULT_SPACE

TWEETS = read_jsonl(ROOT / "examples" / "sentiment_train.jsonl", 96)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("details")
    make_tokenizer(root, [r["text"] for r in TWEETS], 300)
    make_micro_model(root)
    tags = [{"tokens": r["text"].split()[:8], "tags": ["O", "B-X"] * 4} for r in TWEETS if len(r["text"].split()) >= 8]
    (root / "tags.jsonl").write_bytes(jsonl(*tags))
    tuned = run_cli(["finetune", "--model", str(root / "mlm"), "--task", "tagging", "--train", str(root / "tags.jsonl"),
                     "-o", str(root / "ner"), "--epochs", "1", "-q"])  # fmt: skip
    assert tuned.exit_code == 0, tuned.stderr
    return root


def help_of(*command) -> str:
    result = run_cli([*command, "--help"])
    assert result.exit_code == 0, result.stderr
    return result.stdout.decode()


def test_help_names_only_real_flags_and_shows_each_default_once():
    assert "--warmup-steps" not in help_of("finetune") and "--warmup-ratio" not in help_of("pretrain")
    flat = " ".join(help_of("stats").split())
    assert "Write the JSON summary here (.gz compresses). [default: (stdout)]" in flat
    flat = " ".join(help_of("train-bpe").split())
    assert "tokenizer.json and tokenizer_config.json. [required]" in flat and "(stdout)" not in flat
    lines = help_of("finetune").splitlines()
    for part in DEFAULT_SPACE.split(";"):  # each parameter of the default space whole on one line
        assert any(part in line for line in lines), part
    assert "--threads" in help_of("embed")


def test_report_overlap_is_checked_before_training(tmp_path):
    corpus = ROOT / "examples" / "tweets.jsonl"
    result = run_cli(["train-bpe", str(corpus), "-o", str(tmp_path / "tok"), "--report-overlap", "./nonexistent/"])
    assert result.exit_code == 1 and result.stderr == (
        "tweetkit train-bpe: cannot load tokenizer ./nonexistent/: no such directory\n"
    )
    assert not (tmp_path / "tok").exists()


def test_predict_on_a_tagger_reads_the_words_as_evaluate_does(models):
    predicted = run_cli(["predict", "--model", str(models / "ner"), str(models / "tags.jsonl")])
    assert predicted.exit_code == 0, predicted.stderr
    records = predicted.records()
    assert len(records) == len(read_jsonl(models / "tags.jsonl")) and all(len(r["pred_tags"]) == 8 for r in records)
    piped = run_cli(["evaluate", "-q"], stdin=predicted.stdout)
    direct = run_cli(["evaluate", "-q", "--model", str(models / "ner"), str(models / "tags.jsonl")])
    assert json.loads(piped.stdout) == json.loads(direct.stdout)


def test_embed_takes_threads(models, tmp_path):
    result = run_cli(
        ["embed", "--threads", "1", "--model", str(models / "mlm"), "--digits", "3"], stdin=jsonl(*TWEETS[:3])
    )
    assert result.exit_code == 0, result.stderr
    assert [len(r["embedding"]) for r in result.records()] == [32, 32, 32]


def test_a_saved_model_follows_the_umask(models):
    for model in ("mlm", "ner"):
        for name in ("model.safetensors", "config.json"):
            assert os.stat(models / model / name).st_mode & 0o777 == 0o666 & ~current_umask(), (model, name)


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_langid_keeps_a_language_field_that_was_there():
    rows = [{"text": "this is a tweet in english, clearly", "lang": "und"}, {"text": "and this one as well, my friend"}]
    result = run_cli(["langid"], stdin=jsonl(*rows))
    assert result.exit_code == 0, result.stderr
    first, second = result.records()
    assert (first["lang"], first["lang_original"], second["lang"]) == (
        "en",
        "und",
        "en",
    ) and "lang_original" not in second


def test_did_you_mean():
    command = run_cli(["normalise"])
    assert command.exit_code == 2 and "Error: No such command 'normalise'. Did you mean 'normalize'?" in command.stderr
    keep = run_cli(["langid", "--keep", "english"], stdin=jsonl(*TWEETS[:1]))
    assert keep.exit_code == 2 and "--keep: english (did you mean en?) not among" in keep.stderr


@pytest.mark.parametrize("argv", [["stats"], ["evaluate"]])
def test_a_closed_stderr_ends_with_141(argv):
    read, write = os.pipe()
    os.close(read)  # the reader of stderr went away before the table is printed
    rows = jsonl(*[{"text": r["text"], "label": r["label"], "pred": "neutral"} for r in TWEETS])
    try:
        done = subprocess.run([sys.executable, "-m", "tweetkit", *argv], input=rows, stdout=subprocess.PIPE,
                              stderr=write, env=SUBPROCESS_ENV, timeout=120)  # fmt: skip
    finally:
        os.close(write)
    assert done.returncode == 141 and json.loads(done.stdout)  # the data came first
