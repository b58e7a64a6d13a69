"""Every training path under a real 2-process torchrun on gloo, as users run it in cron jobs.

Each run has a deadline that fails the test (a hang is a failure, not a wait), and the
checks look at what the job wrote: one summary on stdout (only the first process speaks),
the model files, no temporary files left by processes racing on one name.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import MICRO_NO_DROPOUT, ROOT, jsonl, make_micro_model, make_tokenizer, read_jsonl
from safetensors.torch import load_file

pytestmark = pytest.mark.torchrun  # minutes in all: `make test-torchrun`, which CI runs
DEADLINE_S = 240
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def torchrun(args, deadline=DEADLINE_S, processes=2) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 -m tweetkit ARGS`; past the deadline its whole
    process group is killed and the test fails."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return run_bounded([*command, "-m", "tweetkit", *map(str, args)], deadline)


def single(args, deadline=DEADLINE_S) -> subprocess.CompletedProcess:
    return run_bounded([sys.executable, "-m", "tweetkit", *map(str, args)], deadline)


def run_bounded(command, deadline) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"hung: {' '.join(command[-12:])}\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def lines(result) -> list[dict]:
    """The JSON lines of stdout, without the timings (which differ run to run)."""
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s")} for r in records]


def same_weights(a, b) -> bool:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def leftovers(directory) -> list[str]:
    return [name for _, _, files in os.walk(directory) for name in files if "partial" in name]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base(tmp_path_factory.mktemp("torchrun"))


def make_base(root):
    """A micro RoBERTa over a tokenizer of the example tweets; data for every task kind
    (scripts/torchrun_repeats.py builds the same)."""
    tweets = read_jsonl(ROOT / "examples" / "tweets.jsonl")
    texts = [r["text"] for r in tweets]
    make_tokenizer(root, texts, 800)
    make_micro_model(root, MICRO_NO_DROPOUT)
    (root / "train.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[:480]]))
    (root / "validation.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[480:]]))
    sentiment = read_jsonl(ROOT / "examples" / "sentiment_train.jsonl")
    rows = {
        "classification": [{"text": r["text"], "label": r["label"]} for r in sentiment],
        "multilabel": [{"text": r["text"], "label": kinds_of(r["text"])} for r in sentiment],
        "regression": [{"text": r["text"], "label": len(r["text"].split()) / 10} for r in sentiment],
        "tagging": [{"tokens": r["text"].split()[:30], "tags": tags_of(r["text"].split()[:30])} for r in sentiment],
    }
    for kind, records in rows.items():
        records = [r for r in records if r.get("tokens", True)]
        (root / f"{kind}.train.jsonl").write_bytes(jsonl(*records[:128]))
        (root / f"{kind}.validation.jsonl").write_bytes(jsonl(*records[128:176]))
    return root


def kinds_of(text: str) -> list[str]:
    return [name for name, present in (("mention", "@user" in text), ("question", "?" in text)) if present]


def tags_of(words: list[str]) -> list[str]:
    return ["B-USER" if w.startswith("@") else "B-TAG" if w.startswith("#") else "O" for w in words]


def pretrain_args(base, output, *extra):
    return ["pretrain", "--train", base / "train.jsonl", "--tokenizer", base / "tok", "--model-config",
            base / "micro.json", "--cache-dir", base / "cache", "--batch-size", "8", "--log-every", "1",
            "-q", "-o", output, *extra]  # fmt: skip


def test_pretrain_mlm_with_validation_and_resume(base, tmp_path):
    straight = torchrun(pretrain_args(base, tmp_path / "straight", "--max-steps", "4", "--validation",
                                      base / "validation.jsonl", "--eval-every", "2"))  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-3000:]
    logged = lines(straight)
    assert [line["step"] for line in logged] == [1, 2, 3, 4, 4]  # one process writes; the last line: validation
    assert "validation_loss" in logged[1] and "validation_loss" in logged[-1]
    one = single(pretrain_args(base, tmp_path / "one", "--max-steps", "4", "--validation",
                               base / "validation.jsonl", "--eval-every", "2"))  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    assert [round(line["loss"], 4) for line in logged[:4]] == [round(line["loss"], 4) for line in lines(one)[:4]]
    assert logged[-1]["validation_loss"] == pytest.approx(lines(one)[-1]["validation_loss"], abs=1e-4)
    assert leftovers(base / "cache") == [] and leftovers(tmp_path / "straight") == []

    # Cut the run back to its step-2 checkpoint, as a kill after it would; --resume ends where the straight run did.
    halted = tmp_path / "halted"
    first = torchrun(pretrain_args(base, halted, "--max-steps", "4", "--save-every", "2", "--validation",
                                   base / "validation.jsonl", "--eval-every", "2"))  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    for name in ("model.safetensors", "tweetkit_train_config.json"):
        (halted / name).unlink()
    import shutil

    shutil.rmtree(halted / "checkpoint-4")
    resumed = torchrun(pretrain_args(base, halted, "--max-steps", "4", "--save-every", "2", "--validation",
                                     base / "validation.jsonl", "--eval-every", "2", "--resume"))  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [line["step"] for line in lines(resumed)] == [3, 4, 4]
    assert same_weights(halted, tmp_path / "straight")


def test_pretrain_simcse_from_a_pretrained_model(base, tmp_path):
    # The MLM head gets no gradient under SimCSE: DDP used to fail at the second step.
    args = ["pretrain", "--init-from", base / "mlm", "--tokenizer", base / "tok", "--objective", "simcse",
            "--train", base / "train.jsonl", "--cache-dir", base / "cache", "--batch-size", "8", "--max-steps", "3",
            "--log-every", "1", "-q"]  # fmt: skip
    two = torchrun([*args, "-o", tmp_path / "two"])
    assert two.returncode == 0, two.stderr[-3000:]
    assert [line["step"] for line in lines(two)] == [1, 2, 3]
    assert all(line["loss"] > 0 for line in lines(two))
    start, trained = load_file(base / "mlm" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    moved = [k for k in trained if not torch.equal(trained[k], start[k])]
    assert any("encoder" in k for k in moved)
    assert not any(k.startswith("lm_head.dense") or k.startswith("lm_head.layer_norm") for k in moved)


def finetune_args(base, kind, output, *extra):
    return ["finetune", "--model", base / "mlm", "--task", kind, "--train", base / f"{kind}.train.jsonl",
            "--validation", base / f"{kind}.validation.jsonl", "--batch-size", "16", "--epochs", "2",
            "--lr", "1e-3", "-q", "-o", output, *extra]  # fmt: skip


def test_finetune_seeds_overwrite_and_resume(base, tmp_path):
    output = tmp_path / "cls"
    first = torchrun(finetune_args(base, "classification", output, "--seeds", "1,2"))
    assert first.returncode == 0, first.stderr[-3000:]
    logged = lines(first)
    summary = logged[-1]
    assert summary["seeds"] == [1, 2]
    for seed in (1, 2):
        assert (output / f"seed-{seed}" / "model.safetensors").exists()
        assert not list((output / f"seed-{seed}").glob("checkpoint-*"))
    one = single(finetune_args(base, "classification", tmp_path / "one", "--seeds", "1,2"))
    assert one.returncode == 0, one.stderr[-3000:]
    assert len(logged) == len(lines(one))  # one process reports: each epoch's line once
    for key, value in lines(one)[-1]["mean_std"].items():
        assert summary["mean_std"][key]["mean"] == pytest.approx(value["mean"], abs=1e-3), key

    again = torchrun(finetune_args(base, "classification", output, "--seeds", "1,2", "--overwrite"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert lines(again) == logged  # deterministic, and the previous run was removed without a race
    resumed = torchrun(finetune_args(base, "classification", output, "--seeds", "1,2", "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert lines(resumed) == [summary]  # finished: nothing trains again


@pytest.mark.parametrize("kind", ["multilabel", "regression", "tagging"])
def test_finetune_each_task_kind(base, tmp_path, kind):
    result = torchrun(finetune_args(base, kind, tmp_path / kind, "--epochs", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    best = lines(result)[-1]["best"]
    assert best["best_epoch"] == 1 and (tmp_path / kind / "model.safetensors").exists()
    evaluated = single(["evaluate", "--model", tmp_path / kind, base / f"{kind}.validation.jsonl", "-q"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    scores = json.loads(evaluated.stdout)
    metric = best["metric"]
    # the saved model is the one validated (batches of another size move the last bits of a near-zero pearson)
    assert scores[metric] == pytest.approx(best[f"validation_{metric}"], abs=1e-3)


def test_linear_baseline_runs_once(base, tmp_path):
    result = torchrun(["finetune", "--model", "linear", "--task", "classification", "--train",
                       base / "classification.train.jsonl", "-q", "-o", tmp_path / "linear"])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(lines(result)) == 1 and (tmp_path / "linear" / "tweetkit_model.json").exists()


def test_sweep_is_refused_with_one_line(base, tmp_path):
    result = torchrun(finetune_args(base, "classification", tmp_path / "sweep", "--sweep-method", "random"))
    assert result.returncode != 0
    assert "a sweep runs its trials in separate processes, not under torchrun" in result.stderr
    assert "tweetkit/commands" not in result.stderr  # no traceback of ours (torchrun prints its own summary)


def test_ctrl_c_checkpoints_and_resumes_to_the_same_model(base, tmp_path):
    args = pretrain_args(base, tmp_path / "cut", "--max-steps", "400", "--save-every", "1000")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tweetkit"]
    process = subprocess.Popen(
        [*command, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        start_new_session=True,
    )  # fmt: skip
    try:
        first = process.stdout.readline()  # training has started
        assert first, process.stderr.read()[-3000:]
        # As a terminal's Ctrl-C does: every process of the group, torchrun and its workers, gets SIGINT
        # (and then each worker a second signal from torchrun).
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("interrupted torchrun hung")
    assert process.returncode != 0
    assert "checkpoint written to" in err, err[-3000:]
    assert list((tmp_path / "cut").glob("checkpoint-*")), err[-3000:]
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    started = time.perf_counter()
    resumed = torchrun([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = torchrun(pretrain_args(base, tmp_path / "straight", "--max-steps", "400", "--save-every", "1000"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert time.perf_counter() - started < 2 * DEADLINE_S
    assert same_weights(tmp_path / "cut", tmp_path / "straight")
