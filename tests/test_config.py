"""Config files and recorded losses: a setting is defined once, a file merges under the
flags, and a tiny seeded run gives the losses recorded here, straight and resumed."""

import json
import os
import shutil

import pytest
import torch
from conftest import MICRO, ROOT, jsonl, make_tokenizer, read_jsonl, run_cli, sliced
from safetensors.torch import load_file

from tweetkit.text.normalize import TweetNormalizer

# Recorded with torch 2.13.0 on the CPU (as torchtune's recipe tests do): a change that
# moves them is a change of behaviour, not a refactoring.
PRETRAIN_LOSSES = [6.218662, 6.216022, 6.184738, 6.18062, 6.186065, 6.182039]
# An epoch's mean loss: from ln 2 (a guess) down as the classifier learns to see the link.
FINETUNE_LOSSES = [0.712245, 0.697498, 0.661536, 0.677753, 0.635736, 0.33245, 0.140436, 0.103892]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("config")
    normalize = TweetNormalizer()
    texts = [normalize(r["text"]) for r in read_jsonl(sliced("semeval2017/train.jsonl"))]
    make_tokenizer(root, texts[:500], 500)
    # A label the micro model can learn in a few dozen steps, so the recorded losses show it learning:
    # whether the tweet holds a link.
    links, plain = [t for t in texts if "HTTPURL" in t][:64], [t for t in texts if "HTTPURL" not in t][:64]
    rows = [{"text": t, "label": "link" if "HTTPURL" in t else "plain"} for pair in zip(links, plain) for t in pair]
    (root / "train.jsonl").write_bytes(jsonl(*rows[:96]))
    (root / "val.jsonl").write_bytes(jsonl(*rows[96:]))
    (root / "micro.json").write_text(json.dumps(MICRO))  # pretrained by the tests themselves
    return root


def pretrain_argv(data, out, *args):
    return ["pretrain", "--train", str(data / "corpus.jsonl"), "--tokenizer", str(data / "tok"), "-o", str(out),
            "--cache-dir", str(data / "cache"), "--model-config", str(data / "micro.json"), "--batch-size", "8",
            "--lr", "1e-3", "--max-steps", "6", "--log-every", "1", "-q", *args]  # fmt: skip


def finetune_argv(data, model, out, *args):
    return ["finetune", "--model", str(model), "--task", "classification", "--train", str(data / "train.jsonl"),
            "--validation", str(data / "val.jsonl"), "-o", str(out), "--epochs", "8", "--batch-size", "16",
            "--lr", "1e-2", "--patience", "0", "-q", *args]  # fmt: skip


def losses(result):
    assert result.exit_code == 0, result.stderr
    return [m["loss"] for m in result.records() if "loss" in m]


def test_recorded_losses_straight_and_resumed(data, tmp_path):
    straight = losses(run_cli(pretrain_argv(data, tmp_path / "mlm")))
    assert straight == pytest.approx(PRETRAIN_LOSSES, abs=1e-4)
    resumed_dir = tmp_path / "resumed"
    losses(run_cli(pretrain_argv(data, resumed_dir, "--save-every", "3", "--keep-checkpoints", "0")))
    shutil.rmtree(resumed_dir / "checkpoint-6")
    assert losses(run_cli(pretrain_argv(data, resumed_dir, "--resume"))) == pytest.approx(PRETRAIN_LOSSES[3:], abs=1e-4)

    tuned = losses(run_cli(finetune_argv(data, tmp_path / "mlm", tmp_path / "clf")))
    assert tuned == pytest.approx(FINETUNE_LOSSES, abs=1e-4)
    again = tmp_path / "clf2"
    losses(run_cli(finetune_argv(data, tmp_path / "mlm", again, "--keep-checkpoints", "8")))
    for step in (30, 36, 42, 48):  # 6 steps an epoch: resume after epoch 4, before the losses fall
        shutil.rmtree(again / f"checkpoint-{step}")
    for name in ("model.safetensors", "tweetkit_train_config.json", "validation_metrics.json"):
        os.remove(again / name)
    assert losses(run_cli(finetune_argv(data, tmp_path / "mlm", again, "--resume"))) == pytest.approx(
        FINETUNE_LOSSES[4:], abs=1e-4
    )


def test_config_file_merges_under_flags(data, tmp_path):
    (tmp_path / "run.toml").write_text("lr = 3e-4\nbatch-size = 4\nbetas = [0.8, 0.9]\nmax_steps = 2\n")
    printed = run_cli([*pretrain_argv(data, tmp_path / "o"), "--config", str(tmp_path / "run.toml"), "--print-config"])
    assert printed.exit_code == 0, printed.stderr
    flags = json.loads(printed.stdout)
    assert flags["lr"] == 1e-3 and flags["max_steps"] == 6  # given as flags: the flags win
    assert flags["batch_size"] == 8 and flags["betas"] == [0.8, 0.9]  # betas only in the file
    assert not (tmp_path / "o").exists()
    (tmp_path / "bad.json").write_text(json.dumps({"learning_rate": 1}))
    bad = run_cli([*pretrain_argv(data, tmp_path / "o"), "--config", str(tmp_path / "bad.json")])
    assert bad.exit_code == 2 and "unknown settings learning_rate" in bad.stderr


def test_required_flags_may_come_from_the_file_and_a_saved_config_reruns(data, tmp_path):
    first = run_cli(pretrain_argv(data, tmp_path / "a", "--max-steps", "2"))
    assert first.exit_code == 0, first.stderr
    saved = tmp_path / "a" / "tweetkit_train_config.json"
    assert json.loads(saved.read_text())["flags"]["mask_prob"] == 0.15
    again = run_cli(
        ["pretrain", "--config", str(saved), "-o", str(tmp_path / "b")]
    )  # --train, --tokenizer from the file
    assert again.exit_code == 0, again.stderr
    assert losses(again) == losses(first)
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (tmp_path / "a" / "model.safetensors").read_bytes()


def test_overwrite_and_resume_are_never_read_from_a_file_nor_saved(data, tmp_path):
    assert run_cli(pretrain_argv(data, tmp_path / "a", "--max-steps", "2", "--overwrite")).exit_code == 0
    saved = json.loads((tmp_path / "a" / "tweetkit_train_config.json").read_text())
    assert not {"overwrite", "resume"} & (set(saved) | set(saved["flags"]))
    assert run_cli(pretrain_argv(data, tmp_path / "b", "--max-steps", "2")).exit_code == 0
    before = (tmp_path / "b" / "model.safetensors").read_bytes()
    (tmp_path / "old.json").write_text(json.dumps({"flags": {**saved["flags"], "overwrite": True}}))
    replayed = run_cli(["pretrain", "--config", str(tmp_path / "old.json"), "-o", str(tmp_path / "b")])
    assert replayed.exit_code == 2 and replayed.stderr.splitlines() == [
        f"tweetkit: --config {tmp_path / 'old.json'}: overwrite ignored: give --overwrite on the command line",
        f"tweetkit pretrain: -o {tmp_path / 'b'} holds a previous run (checkpoint-2, config.json, model.safetensors, "
        "tokenizer.json, ...): add --overwrite to replace it, or --resume to continue it",
    ]
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == before  # the finished run is still there


def test_config_keys_are_the_long_flag_names_in_every_command(data, tmp_path):
    (tmp_path / "f.toml").write_text(
        f'task = "classification"\ntrain = "{data / "train.jsonl"}"\nvalidation = "{data / "val.jsonl"}"\n'
        'model = "linear"\noutput = "o"\nfield = "text"\nlinear-c = 2.0\n'
    )
    shown = run_cli(["finetune", "--config", str(tmp_path / "f.toml"), "--print-config"])
    assert shown.exit_code == 0, shown.stderr
    flags = json.loads(shown.stdout)
    assert (flags["task"], flags["train"], flags["validation"]) == (
        "classification",
        str(data / "train.jsonl"),
        str(data / "val.jsonl"),
    )
    assert (flags["field"], flags["linear_c"], flags["output"]) == ("text", 2.0, "o")
    (tmp_path / "p.toml").write_text(
        f'train = ["{data / "corpus.jsonl"}"]\ntokenizer = "{data / "tok"}"\noutput = "o"\n'
    )
    pretrain = json.loads(run_cli(["pretrain", "--config", str(tmp_path / "p.toml"), "--print-config"]).stdout)
    assert pretrain["train"] == [str(data / "corpus.jsonl")] and "train_files" not in pretrain
    (tmp_path / "typo.toml").write_text('valdation = "v.jsonl"\nbatch-sise = 8\n')
    typo = run_cli(["finetune", "--config", str(tmp_path / "typo.toml"), "--print-config"])
    assert typo.exit_code == 2 and typo.stderr.strip().endswith(
        f"--config {tmp_path / 'typo.toml'}: unknown settings batch_sise (did you mean batch_size?), "
        "valdation (did you mean validation?)"
    )


def test_the_example_config_file(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # its paths are relative to the repository root, as its comment says
    flags = json.loads(run_cli(["finetune", "--config", "examples/finetune.toml", "--print-config"]).stdout)
    assert {k: flags[k] for k in ("model", "task", "train", "validation", "epochs", "lr", "batch_size")} == {
        "model": "demo-out/mlm", "task": "classification", "train": "examples/sentiment_train.jsonl",
        "validation": "examples/sentiment_test.jsonl", "epochs": 2.0, "lr": 2e-4, "batch_size": 32,
    }  # fmt: skip
    run = run_cli(
        ["finetune", "--config", "examples/finetune.toml", "--model", "linear", "-o", str(tmp_path / "l"), "-q"]
    )
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["best"]["validation_macro_f1"] == pytest.approx(0.560902429, abs=1e-6)


def test_micro_batches_accumulate_to_the_one_big_batch(data, tmp_path):
    # --batch-size 8 in micro-batches of 2: the same losses and weights as the whole batch in one pass. Without
    # dropout, whose masks are drawn per forward pass, the sums are the same up to the order of the additions.
    (tmp_path / "still.json").write_text(
        json.dumps(dict(MICRO, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    )
    still = ["--model-config", str(tmp_path / "still.json")]
    whole = losses(run_cli(pretrain_argv(data, tmp_path / "whole", *still)))
    split = losses(run_cli(pretrain_argv(data, tmp_path / "split", *still, "--micro-batch-size", "2")))
    assert len(whole) == 6 and split == pytest.approx(whole, abs=2e-6)
    one, four = (load_file(tmp_path / run / "model.safetensors") for run in ("whole", "split"))
    assert one.keys() == four.keys()
    for name in one:
        torch.testing.assert_close(four[name], one[name], atol=1e-6, rtol=1e-5, msg=name)
