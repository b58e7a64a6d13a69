"""finetune sweeps on Optuna: real tiny trials, pruning, resume after a kill, two workers
sharing one SQLite study, the same trials for the same study seed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import SUBPROCESS_ENV, jsonl, make_micro_model, make_tokenizer, read_jsonl, run_cli, sliced

# lr 1e-7 is hopeless (the random head's guess), so the median pruner has a trial to stop.
SPACE = "lr=1e-7,0.001,0.003;weight_decay=0:0.1;batch_size=8,16"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    # Real tweets, a label a micro model learns in a few epochs: is it a question?
    irony = read_jsonl(sliced("tweeteval/irony/train.jsonl"), 480)
    labelled = [{"text": r["text"], "label": "question" if "?" in r["text"] else "statement"} for r in irony]
    (root / "train.jsonl").write_bytes(jsonl(*labelled[:320]))
    (root / "val.jsonl").write_bytes(jsonl(*labelled[320:]))
    make_tokenizer(root, [r["text"] for r in irony], 400)
    make_micro_model(root)
    return root


def sweep_argv(data, out, *args):
    return ["finetune", "--model", str(data / "mlm"), "--task", "classification",
            "--train", str(data / "train.jsonl"), "--validation", str(data / "val.jsonl"),
            "-o", str(out), "--epochs", "4", "--patience", "0", "--sweep-method", "tpe", "--search-space", SPACE,
            "-q", *args]  # fmt: skip


def trials_of(lines):
    return [line for line in lines if "trial" in line and "state" in line]


def test_tpe_sweep_prunes_keeps_the_best_and_plots(data, tmp_path):
    out = tmp_path / "sweep"
    result = run_cli(sweep_argv(data, out, "--sweep-trials", "6"))
    assert result.exit_code == 0, result.stderr
    lines = result.records()
    trials = trials_of(lines)
    assert len(trials) == 6 and {t["state"] for t in trials} <= {"complete", "pruned"}
    assert any(t["state"] == "pruned" for t in trials), trials  # a hopeless trial stopped early
    complete = [t for t in trials if t["state"] == "complete"]
    best = lines[-1]["sweep_best"]
    assert best["value"] == max(t["value"] for t in complete) and lines[-1]["trials"] == 6
    # The best trial's model is at the root, loadable like any finetune output, with its config.
    saved = json.loads((out / "validation_metrics.json").read_text())
    assert saved["validation_macro_f1"] == pytest.approx(best["value"])
    assert json.loads((out / "tweetkit_train_config.json").read_text())["lr"] == pytest.approx(best["lr"])
    flags = json.loads((out / "tweetkit_train_config.json").read_text())["flags"]  # --config reruns that trial alone
    assert (flags["lr"], flags["batch_size"], flags["output"]) == (
        best["lr"],
        best["batch_size"],
        str(out / f"trial-{best['trial']}"),
    )
    assert not {"sweep_method", "search_space", "sweep_trials"} & set(flags)
    assert all(
        set(line) <= {"trial", "state", "value", "lr", "weight_decay", "batch_size"} for line in lines[:-1]
    )  # stdout: the trials only
    scored = json.loads(run_cli(["evaluate", "-q", "--model", str(out), str(data / "val.jsonl")]).stdout)
    assert scored["macro_f1"] == pytest.approx(best["value"], abs=1e-9)
    for name in ("optimization_history.png", "optimization_history.svg", "param_importances.png"):
        assert (out / name).stat().st_size > 1000
    trial_dirs = [out / f"trial-{t['trial']}" for t in trials]
    assert not any(name.startswith("checkpoint-") for d in trial_dirs if d.exists() for name in os.listdir(d))
    # The same study seed in a new study gives the same trials.
    again = trials_of(run_cli(sweep_argv(data, tmp_path / "again", "--sweep-trials", "3", "--no-prune")).records())
    assert [(t["lr"], t["weight_decay"], t["batch_size"]) for t in again] == [
        (t["lr"], t["weight_decay"], t["batch_size"]) for t in trials[:3]
    ]


def test_killed_sweep_resumes_without_losing_a_trial(data, tmp_path):
    out = tmp_path / "sweep"
    process = subprocess.Popen(
        [sys.executable, "-m", "tweetkit", *sweep_argv(data, out, "--sweep-trials", "4", "--no-prune")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=SUBPROCESS_ENV,
    )
    first = [json.loads(process.stdout.readline()) for _ in range(2)]
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    resumed = subprocess.run(
        [sys.executable, "-m", "tweetkit", *sweep_argv(data, out, "--sweep-trials", "4", "--no-prune")],
        capture_output=True,
        env=SUBPROCESS_ENV,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    lines = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert lines[-1]["trials"] == 4 and len(trials_of(lines)) == 2  # only the two missing trials ran again
    import optuna

    study = optuna.load_study(study_name="finetune", storage=f"sqlite:///{out / 'study.db'}")
    kept = {t.number: t.value for t in study.trials if t.state.name == "COMPLETE"}
    assert all(kept[t["trial"]] == t["value"] for t in first) and len(kept) == 4


def test_two_workers_share_one_sqlite_study(data, tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    argv = [sys.executable, "-m", "tweetkit", *sweep_argv(data, out, "--sweep-trials", "4", "--no-prune")]
    started = time.perf_counter()
    workers = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=SUBPROCESS_ENV) for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err.decode()[-1500:] for _, err in outputs]
    ran = [trials_of([json.loads(line) for line in stdout.splitlines()]) for stdout, _ in outputs]
    assert all(len(r) >= 1 for r in ran), ran  # both workers took trials
    numbers = [t["trial"] for r in ran for t in r]
    assert len(numbers) == len(set(numbers)) >= 4, numbers
    assert time.perf_counter() - started < 600


def test_bad_storage_and_search_space_are_one_line(data, tmp_path):
    storage = run_cli(sweep_argv(data, tmp_path / "a", "--study-storage", "nonsense"))
    assert (
        storage.exit_code == 1
        and "--study-storage nonsense" in storage.stderr
        and len(storage.stderr.strip().splitlines()) == 1
    )
    space = run_cli([*sweep_argv(data, tmp_path / "b"), "--search-space", "learning_rate=1:2"])
    assert space.exit_code == 1 and "cannot search 'learning_rate=1:2'" in space.stderr


def linear_sweep_argv(data, out, space, trials, *args):
    return ["finetune", "--model", "linear", "--task", "classification",
            "--train", str(data / "train.jsonl"), "--validation", str(data / "val.jsonl"),
            "-o", str(out), "--sweep-method", "tpe", "--search-space", space, "--sweep-trials", str(trials),
            "-q", *args]  # fmt: skip


def test_a_changed_search_space_is_refused_before_any_trial(data, tmp_path):
    import optuna

    out = tmp_path / "sweep"
    assert run_cli(linear_sweep_argv(data, out, "batch_size=16,32", 1)).exit_code == 0
    changed = run_cli(linear_sweep_argv(data, out, "batch_size=16,64", 2))
    assert changed.exit_code == 1
    assert changed.stderr == (
        "tweetkit finetune: study 'finetune' searched another space (batch_size 16,32 -> 16,64): use another -o "
        "(or --study-name, with a shared --study-storage) for a new study, or --overwrite to start this one again\n"
    )
    other = run_cli(linear_sweep_argv(data, out, "lr=log:1e-5:0.001", 2))
    assert "(batch_size 16,32 -> (none); lr (none) -> log:1e-05:0.001)" in other.stderr
    study = optuna.load_study(study_name="finetune", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]  # nothing left RUNNING
    again = run_cli(linear_sweep_argv(data, out, "batch_size=16,64", 2, "--overwrite"))
    assert again.exit_code == 0, again.stderr
    study = optuna.load_study(study_name="finetune", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 2 and study.user_attrs["search_space"] == {"batch_size": "16,64"}


@pytest.mark.parametrize(
    "space, error",
    [
        ("epochs=int:0:2", "epochs must be > 0 (got 0)"),
        ("lr=0:0.1", "lr must be > 0 (got 0.0)"),
        ("batch_size=0,8", "batch_size must be >= 1 (got 0)"),
        ("warmup_ratio=0:1.5", "warmup_ratio must be >= 0 and <= 1 (got 1.5)"),
    ],
)
def test_search_space_ranges_are_checked_like_the_flags(data, tmp_path, space, error):
    result = run_cli(linear_sweep_argv(data, tmp_path / "s", space, 2))
    assert result.exit_code == 1 and result.stderr == f"tweetkit finetune: --search-space {space!r}: {error}\n"
    assert not (tmp_path / "s").exists()  # refused before any trial


def test_the_sweep_grid_is_the_search_space_grammar_with_values():
    from tweetkit.sweep import parse_grid

    assert parse_grid("lr=1e-5,3e-5;batch-size=16,32;beta2=0.98,0.999") == {
        "lr": [1e-5, 3e-5],
        "batch_size": [16, 32],
        "beta2": [0.98, 0.999],
    }


@pytest.mark.parametrize(
    "grid, error",
    [
        ("foo=1", "--sweep: cannot search 'foo=1' (one of batch_size, beta1, beta2, epochs, eps, linear_c, lr, "
                  "max_length, warmup_ratio, weight_decay)"),
        ("lr=1e-5:1e-3", "--sweep: a grid lists values (NAME=a,b,c), not a range (lr); ranges are for "
                         "--search-space with --sweep-method random or tpe"),
        ("epochs=0,1", "--sweep 'epochs=0,1': epochs must be > 0 (got 0)"),
    ],
)  # fmt: skip
def test_a_bad_sweep_grid_is_one_line_before_anything_runs(data, tmp_path, grid, error):
    argv = ["finetune", "--model", "linear", "--task", "classification", "--train", str(data / "train.jsonl"),
            "--validation", str(data / "val.jsonl"), "-o", str(tmp_path / "s"), "--sweep", grid, "-q"]  # fmt: skip
    result = run_cli(argv)
    assert result.exit_code == 1 and result.stderr == f"tweetkit finetune: {error}\n"
    assert not (tmp_path / "s").exists()


def test_an_interrupted_trial_is_failed_and_removed_not_left_for_resume(tmp_path):
    import optuna

    from tweetkit.errors import Interrupted
    from tweetkit.sweep import SweepSettings, default_storage, parse_space, run_study

    def objective(point, report, directory):
        os.makedirs(os.path.join(directory, "checkpoint-3"))  # what the loop leaves on Ctrl-C
        raise Interrupted(f"at step 3; checkpoint written to {directory}, rerun with --resume to continue")

    settings = SweepSettings("random", 2, default_storage(str(tmp_path)), "s", 1, False, "maximize")
    with pytest.raises(Interrupted) as stopped:
        run_study(settings, parse_space("lr=0.1:0.2"), None, objective, str(tmp_path), print)
    assert str(stopped.value) == (
        f"during trial 0: it is marked failed and {tmp_path / 'trial-0'} removed; "
        "rerun the same command to continue the study with a new trial"
    )
    assert not (tmp_path / "trial-0").exists()
    study = optuna.load_study(study_name="s", storage=default_storage(str(tmp_path)))
    assert [t.state.name for t in study.trials] == ["FAIL"]
