"""Safe on bad days: no code runs from a model or checkpoint directory, no output
destroys an input, every resume recovers or refuses by name."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import MICRO, SUBPROCESS_ENV, jsonl, make_micro_model, make_tokenizer, read_jsonl, run_cli, sliced
from safetensors.torch import load_file

from tweetkit.text.normalize import TweetNormalizer


class Exploit:
    """Unpickling this creates a file: the proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_pickle(path, marker):
    with open(path, "wb") as handle:
        pickle.dump(Exploit(marker), handle)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    normalize = TweetNormalizer()
    irony = read_jsonl(sliced("tweeteval/irony/train.jsonl"), 240)
    (root / "train.jsonl").write_bytes(jsonl(*[dict(r, text=normalize(r["text"])) for r in irony[:200]]))
    (root / "val.jsonl").write_bytes(jsonl(*[dict(r, text=normalize(r["text"])) for r in irony[200:]]))
    texts = [normalize(r["text"]) for r in read_jsonl(sliced("semeval2017/train.jsonl"), 600)]
    make_tokenizer(root, texts, 600)
    make_micro_model(root)
    linear = run_cli(
        [
            "finetune",
            "--model",
            "linear",
            "--task",
            "classification",
            "--train",
            str(root / "train.jsonl"),
            "-o",
            str(root / "linear"),
            "-q",
        ]
    )
    assert linear.exit_code == 0, linear.stderr
    return root


def pretrain_args(data, out, *args):
    return [
        "pretrain",
        "--train",
        str(data / "corpus.jsonl"),
        "--tokenizer",
        str(data / "tok"),
        "-o",
        str(out),
        "--cache-dir",
        str(data / "cache"),
        "--model-config",
        str(data / "micro.json"),
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--log-every",
        "1",
        "-q",
        *args,
    ]


def pretrain(data, out, *args, code=0):
    result = run_cli(pretrain_args(data, out, *args))
    assert result.exit_code == code, result.stderr
    return result


def losses(result):
    return [m["loss"] for m in result.records() if "loss" in m]


def same_weights(a, b):
    x, y = load_file(os.path.join(a, "model.safetensors")), load_file(os.path.join(b, "model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


# --- no code runs from a model directory ----------------------------------------------------


def test_linear_model_is_data_only_and_round_trips(data):
    files = sorted(os.listdir(data / "linear"))
    assert files == ["linear_model.safetensors", "linear_vocabulary.json", "tweetkit_model.json"]
    for name in files:  # no pickle protocol header anywhere
        assert not (data / "linear" / name).read_bytes().startswith(b"\x80")
    scored = run_cli(["evaluate", "-q", "--model", str(data / "linear"), str(data / "val.jsonl")])
    assert scored.exit_code == 0, scored.stderr
    from tweetkit import linear

    rows = read_jsonl(data / "train.jsonl")
    fitted = linear.fit("classification", [r["text"] for r in rows], [r["label"] for r in rows])
    _, loaded = linear.load(str(data / "linear"))
    texts = [r["text"] for r in read_jsonl(data / "val.jsonl")]
    assert (fitted.predict_proba(texts) == loaded.predict_proba(texts)).all()


def test_a_pickled_model_file_is_never_loaded(data, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    plant_pickle(old / "tfidf.joblib", tmp_path / "pwned")
    (old / "tweetkit_model.json").write_text(
        json.dumps({"type": "tfidf", "task": "classification", "labels": ["a", "b"]})
    )  # as older tweetkit wrote
    for command in (["predict", "--model", str(old)], ["evaluate", "--model", str(old), str(data / "val.jsonl")]):
        result = run_cli(command, stdin=jsonl({"text": "hi"}))
        assert result.exit_code == 1 and "pickled" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "pwned").exists()


def test_predict_on_a_gpu_that_is_not_there_is_one_line(data):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_cli(["predict", "--model", str(data / "mlm"), "--device", "cuda"], stdin=jsonl({"text": "hi"}))
    assert (
        result.exit_code == 1
        and "--device cuda: no CUDA GPU" in result.stderr
        and len(result.stderr.strip().splitlines()) == 1
    )


def test_two_added_files_cannot_take_over_an_hf_model(data, tmp_path):
    target = tmp_path / "hf"
    shutil.copytree(data / "mlm", target)
    for name in os.listdir(data / "linear"):
        shutil.copy(data / "linear" / name, target / name)
    result = run_cli(["predict", "--model", str(target)], stdin=jsonl({"text": "hi"}))
    assert result.exit_code == 1 and "holds both" in result.stderr


def test_resume_never_unpickles(data, tmp_path):
    out = tmp_path / "run"
    pretrain(data, out, "--max-steps", "4", "--save-every", "2")
    checkpoint = out / "checkpoint-4"
    assert not any(name.endswith((".pt", ".pkl", ".bin")) for name in os.listdir(checkpoint))
    plant_pickle(checkpoint / "trainer_state.pt", tmp_path / "pwned")
    plant_pickle(checkpoint / "optimizer.pt", tmp_path / "pwned")
    pretrain(data, out, "--max-steps", "4", "--save-every", "2", "--resume")
    assert not (tmp_path / "pwned").exists()


# --- outputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["-o", "{in}"], ["--dropped", "{in}"], ["--on-error", "skip", "--rejects", "{in}"]])
def test_an_output_that_is_an_input_is_refused(tmp_path, flags):
    source = tmp_path / "s.jsonl"
    content = jsonl({"text": "one tweet here"}, {"text": "one tweet here"})
    source.write_bytes(content)
    command = "normalize" if "--dropped" not in flags else "dedup"
    result = run_cli([command, str(source), *[f.replace("{in}", str(source)) for f in flags]])
    assert result.exit_code == 2 and "input" in result.stderr
    assert source.read_bytes() == content


def test_a_reused_output_directory_is_refused_then_replaced(data, tmp_path):
    out = tmp_path / "clf"
    args = ["--task", "classification", "--train", str(data / "train.jsonl"), "-o", str(out), "-q"]
    assert run_cli(["finetune", "--model", "linear", *args]).exit_code == 0
    again = run_cli(["finetune", "--model", str(data / "mlm"), *args, "--epochs", "1"])
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    replaced = run_cli(["finetune", "--model", str(data / "mlm"), *args, "--epochs", "1", "--overwrite"])
    assert replaced.exit_code == 0, replaced.stderr
    assert not (out / "tweetkit_model.json").exists()
    predicted = run_cli(["predict", "--model", str(out)], stdin=jsonl({"text": "so ironic"})).records()[0]
    assert (out / "config.json").exists() and set(predicted["scores"]) == {"irony", "non_irony"}
    assert "checkpoint" not in " ".join(os.listdir(out))


# --- resume ---------------------------------------------------------------------------------


def test_resume_refuses_other_settings_by_name(data, tmp_path):
    out = tmp_path / "run"
    pretrain(data, out, "--max-steps", "4", "--save-every", "2")
    lr = pretrain(data, out, "--max-steps", "4", "--resume", "--lr", "5e-4", code=1)
    assert "lr: 0.001 -> 0.0005" in lr.stderr and len(lr.stderr.strip().splitlines()) == 1
    (tmp_path / "wide.json").write_text(json.dumps(dict(MICRO, hidden_size=64)))
    shape = run_cli(
        pretrain_args(data, out, "--max-steps", "4", "--resume") + ["--model-config", str(tmp_path / "wide.json")]
    )
    assert shape.exit_code == 1 and "hidden_size: 32 -> 64" in shape.stderr and "Traceback" not in shape.stderr


def test_resume_without_checkpoint_says_so(data, tmp_path):
    result = run_cli(
        [arg for arg in pretrain_args(data, tmp_path / "fresh", "--max-steps", "2", "--resume") if arg != "-q"]
    )
    assert result.exit_code == 0 and "no checkpoint" in result.stderr and "starting fresh" in result.stderr


def test_corrupt_latest_checkpoint_falls_back_and_finishes_identically(data, tmp_path):
    pretrain(data, tmp_path / "straight", "--max-steps", "6")
    out = tmp_path / "run"
    pretrain(data, out, "--max-steps", "6", "--save-every", "2", "--keep-checkpoints", "0")
    assert sorted(os.listdir(out)).count("checkpoint-4") == 1
    shutil.rmtree(out / "checkpoint-6")
    (out / "model.safetensors").unlink()
    with open(out / "checkpoint-4" / "optimizer.safetensors", "r+b") as handle:
        handle.truncate(100)  # a copy cut short
    result = run_cli(
        [a for a in pretrain_args(data, out, "--max-steps", "6", "--save-every", "2", "--resume") if a != "-q"]
    )
    assert result.exit_code == 0, result.stderr
    assert (
        "checkpoint-4 is unreadable" in result.stderr
        and "resumed from" in result.stderr
        and "checkpoint-2" in result.stderr
    )
    assert same_weights(tmp_path / "straight", out)


def test_finished_run_resumes_to_a_no_op_that_writes_the_model(data, tmp_path):
    out = tmp_path / "run"
    first = pretrain(data, out, "--max-steps", "4", "--save-every", "2")
    (out / "model.safetensors").unlink()  # killed between the last checkpoint and the final save
    again = pretrain(data, out, "--max-steps", "4", "--save-every", "2", "--resume")
    assert losses(again) == [] and len(losses(first)) == 4
    assert same_weights(out / "checkpoint-4", out)


def test_keep_checkpoints_prunes(data, tmp_path):
    out = tmp_path / "run"
    pretrain(data, out, "--max-steps", "6", "--save-every", "1", "--keep-checkpoints", "2")
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == ["checkpoint-5", "checkpoint-6"]


def run_process(args):
    process = subprocess.run(
        [sys.executable, "-m", "tweetkit", *args], capture_output=True, env=SUBPROCESS_ENV, timeout=300
    )
    assert process.returncode == 0, process.stderr.decode()[-2000:]
    return [json.loads(line) for line in process.stdout.splitlines()]


def as_from_a_terminal():
    """In the child before it starts: Ctrl-C's default action, as a command typed at a terminal has it
    (a test runner may pass SIGINT on ignored, and a process started so keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_after(args, lines):
    """Run tweetkit in a process, send SIGINT after `lines` lines of stdout; (exit status, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tweetkit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=SUBPROCESS_ENV,
        preexec_fn=as_from_a_terminal,
    )  # fmt: skip
    for _ in range(lines):
        process.stdout.readline()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    return process.returncode, err.decode()


def test_ctrl_c_writes_a_checkpoint_and_resume_matches_the_straight_run(data, tmp_path):
    straight = run_process(pretrain_args(data, tmp_path / "straight", "--max-steps", "30"))
    out = tmp_path / "run"
    code, err = interrupt_after(pretrain_args(data, out, "--max-steps", "30"), 2)
    assert code == 130 and "checkpoint written" in err and "Traceback" not in err, err
    saved = [n for n in os.listdir(out) if n.startswith("checkpoint-")]
    assert len(saved) == 1 and 2 <= int(saved[0].split("-")[1]) < 30
    resumed = run_process(pretrain_args(data, out, "--max-steps", "30", "--resume"))
    assert [m["step"] for m in resumed] == list(range(int(saved[0].split("-")[1]) + 1, 31))
    assert [m["loss"] for m in resumed] == [m["loss"] for m in straight][-len(resumed) :]
    assert same_weights(tmp_path / "straight", out)


def test_finetune_resumes_to_the_same_best_model(data, tmp_path):
    args = [
        "finetune",
        "--model",
        str(data / "mlm"),
        "--task",
        "classification",
        "--train",
        str(data / "train.jsonl"),
        "--validation",
        str(data / "val.jsonl"),
        "--epochs",
        "8",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--patience",
        "0",
        "-q",
    ]
    straight = run_process([*args, "-o", str(tmp_path / "straight")])
    assert not any(
        n.startswith("checkpoint-") for n in os.listdir(tmp_path / "straight")
    )  # only the best model is kept
    out = tmp_path / "run"
    code, err = interrupt_after([*args, "-o", str(out)], 2)  # after the first epochs' lines
    assert code == 130 and "checkpoint written" in err, err
    resumed = run_process([*args, "-o", str(out), "--resume"])
    assert resumed[-1] == straight[-1]
    assert same_weights(tmp_path / "straight", out)
    again = run_process([*args, "-o", str(out), "--resume"])  # finished: nothing to do
    assert again == [straight[-1]]


def test_saved_config_has_what_the_run_depends_on(data, tmp_path):
    out = tmp_path / "run"
    pretrain(data, out, "--max-steps", "1")
    saved = json.loads((out / "tweetkit_train_config.json").read_text())
    assert (
        saved["run"]["max_length"] == 128
        and saved["run"]["mask_prob"] == 0.15
        and saved["run"]["tokenizer"].endswith("tok")
    )
    assert saved["model_config"]["hidden_size"] == 32


def test_token_cache_keeps_on_error_apart(data, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl({"text": "a fine tweet"}) * 20 + b"not json\n")
    common = [
        "pretrain",
        "--train",
        str(bad),
        "--tokenizer",
        str(data / "tok"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--model-config",
        str(data / "micro.json"),
        "--max-steps",
        "0",
        "-q",
    ]
    assert run_cli([*common, "-o", str(tmp_path / "a"), "--on-error", "skip"]).exit_code == 0
    strict = run_cli([*common, "-o", str(tmp_path / "b")])
    assert strict.exit_code == 1 and f"{bad}:21: invalid JSON" in strict.stderr


def test_a_background_job_started_with_sigint_ignored_keeps_ignoring_it(data, tmp_path):
    """`tweetkit pretrain ... &` in a script, or under nohup: SIGINT is ignored from the start, and a
    Ctrl-C meant for the foreground neither stops nor checkpoints it."""
    args = pretrain_args(data, tmp_path / "run", "--max-steps", "30")
    ignoring = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    process = subprocess.Popen(
        [sys.executable, "-m", "tweetkit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=SUBPROCESS_ENV,
        preexec_fn=ignoring,
    )  # fmt: skip
    process.stdout.readline()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0 and b"stopping" not in err, err.decode()
    assert json.loads(out.splitlines()[-1])["step"] == 30


def test_a_second_ctrl_c_stops_at_once(data, tmp_path):
    # Steps of seconds: the first Ctrl-C, early in step 2, asks for a checkpoint at its end and says so on
    # stderr; the second, sent once that notice is out, stops the process there and then, with no checkpoint.
    # (Two SIGINTs sent before Python's handler runs, e.g. during one long backward pass, count as one.)
    shape = dict(MICRO, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    (tmp_path / "shape.json").write_text(json.dumps(shape))
    out = tmp_path / "run"
    args = pretrain_args(data, out, "--max-steps", "100", "--batch-size", "64",
                         "--model-config", str(tmp_path / "shape.json"))  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "tweetkit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=SUBPROCESS_ENV,
        preexec_fn=as_from_a_terminal,
    )  # fmt: skip
    first = json.loads(process.stdout.readline())  # step 1 is done, step 2 has begun
    step = first["elapsed_s"]
    assert step > 2, f"steps of {step} s are too short for this test: make the shape bigger"
    process.send_signal(signal.SIGINT)
    notice = process.stderr.readline()
    assert notice == (
        b"tweetkit: stopping at the end of this step, with a checkpoint (Ctrl-C again: stop at once, without one)\n"
    )
    pressed = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    took = time.monotonic() - pressed
    assert process.returncode == 130 and took < step, (process.returncode, took, step, err.decode())
    assert err.decode().endswith("tweetkit pretrain: interrupted\n") and b"Traceback" not in err, err.decode()
    assert not list(out.glob("checkpoint-*"))
