"""--threads / TWEETKIT_THREADS: which count wins, that the OpenMP runtime sees it (and the
wait policy of the situation) although the CLI imports torch lazily, and that children inherit it."""

import json
import os
import subprocess
import sys

import pytest
from conftest import MICRO, ROOT, make_tokenizer, run_cli

from tweetkit import threads
from tweetkit.errors import UsageError


def test_precedence_flag_env_omp_cores():
    cores = threads.physical_cores(threads.available_cpus())
    assert threads.resolve(3, {"TWEETKIT_THREADS": "2", "OMP_NUM_THREADS": "1"}) == (3, "--threads")
    assert threads.resolve(None, {"TWEETKIT_THREADS": " 2 ", "OMP_NUM_THREADS": "1"}) == (2, "TWEETKIT_THREADS")
    assert threads.resolve(None, {"OMP_NUM_THREADS": "4,2"}) == (4, "OMP_NUM_THREADS")  # nested: the outer level
    assert threads.resolve(None, {"OMP_NUM_THREADS": ""}) == (cores, "cores")
    assert threads.resolve(None, {}) == (cores, "cores")
    # a launcher's processes on this machine share its cores, never below one thread each
    assert threads.resolve(None, {"LOCAL_WORLD_SIZE": "64"}) == (max(1, cores // 64), "cores")
    assert 1 <= cores <= len(threads.available_cpus())


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_bad_environment_value_is_one_line(value):
    with pytest.raises(UsageError, match=f"TWEETKIT_THREADS='{value}': expected a whole number of threads >= 1"):
        threads.resolve(None, {"TWEETKIT_THREADS": value})


def test_bad_values_through_the_cli(tmp_path):
    bad = run_cli(["predict", "--model", str(tmp_path), "--threads", "0"])
    assert bad.exit_code == 2 and "'--threads': 0 is not in the range x>=1" in bad.stderr
    saved = os.environ.get("TWEETKIT_THREADS")
    os.environ["TWEETKIT_THREADS"] = "many"
    try:
        env = run_cli(["predict", "--model", str(tmp_path)])
    finally:
        os.environ.pop("TWEETKIT_THREADS")
        if saved is not None:
            os.environ["TWEETKIT_THREADS"] = saved
    assert env.exit_code == 2 and len(env.stderr.strip().splitlines()) == 1, env.stderr
    assert "tweetkit predict: TWEETKIT_THREADS='many': expected a whole number" in env.stderr


def test_physical_cores_count_hyperthreads_once(monkeypatch):
    topology = {0: ("0", "0"), 1: ("0", "0"), 2: ("0", "1"), 3: ("0", "1")}  # 2 cores, 2 threads each

    def fake_open(path, *args, **kwargs):
        import io

        cpu = int(path.split("/cpu")[-1].split("/")[0])
        return io.StringIO(topology[cpu][0 if path.endswith("physical_package_id") else 1] + "\n")

    monkeypatch.setattr("builtins.open", fake_open)
    assert threads.physical_cores([0, 1, 2, 3]) == 2
    assert threads.physical_cores([0, 2]) == 2
    assert threads.physical_cores([1]) == 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("threads")
    make_tokenizer(root, [f"tweet number {i} about threads and cores" for i in range(60)], 200)
    (root / "micro.json").write_text(json.dumps(MICRO))
    return root


OUR_VARIABLES = ("TWEETKIT_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", threads.SHARED_ENV, threads.OURS)


def pretrain_env(corpus, tmp_path, args, **env):
    """`tweetkit pretrain --max-steps 0` in a fresh process, with libgomp printing its settings."""
    clean = {k: v for k, v in os.environ.items() if k not in (*OUR_VARIABLES, *threads.WAIT_CHOICES)}
    argv = ["pretrain", "--train", str(corpus / "corpus.jsonl"), "--tokenizer", str(corpus / "tok"),
            "-o", str(tmp_path / "mlm"), "--model-config", str(corpus / "micro.json"), "--max-steps", "0",
            "--cache-dir", str(tmp_path / "cache"), *args]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "tweetkit", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, "PYTHONPATH": str(ROOT), "OMP_DISPLAY_ENV": "VERBOSE", **env},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def test_settings_reach_openmp_although_torch_loads_lazily(corpus, tmp_path):
    err = pretrain_env(corpus, tmp_path, ["--threads", "1"])
    assert "OMP_NUM_THREADS = '1'" in err and "GOMP_SPINCOUNT = '0'" in err  # passive: no spinning
    assert "1 process(es) of 1 thread(s)" in err
    err = pretrain_env(corpus, tmp_path, ["--overwrite"], TWEETKIT_THREADS="3")
    assert "OMP_NUM_THREADS = '3'" in err and "1 process(es) of 3 thread(s)" in err
    # a wait policy the user chose is left alone (ACTIVE: libgomp spins for minutes)
    err = pretrain_env(corpus, tmp_path, ["--overwrite", "--threads", "2"], OMP_WAIT_POLICY="ACTIVE")
    assert "GOMP_SPINCOUNT = '30000000000'" in err and "1 process(es) of 2 thread(s)" in err


def test_children_inherit_the_setting():
    code = (
        "import subprocess, sys\n"
        "from tweetkit import threads\n"
        "threads.apply(1)\n"
        "child = 'import os, torch; "
        'print(os.environ["TWEETKIT_THREADS"], os.environ["OMP_WAIT_POLICY"], torch.get_num_threads())\'\n'
        "subprocess.run([sys.executable, '-c', child], check=True)\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in (*OUR_VARIABLES, *threads.WAIT_CHOICES)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**clean, "PYTHONPATH": str(ROOT)}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "PASSIVE", "1"]


def test_wait_policy_spins_alone_and_sleeps_when_shared():
    cores = threads.physical_cores(threads.available_cpus())
    assert threads.wait_policy(cores, environ={}) is None  # the cores to itself: libgomp's spin
    assert threads.wait_policy(cores, shared=True, environ={}) == "PASSIVE"
    assert threads.wait_policy(cores, environ={threads.SHARED_ENV: "1"}) == "PASSIVE"
    assert threads.wait_policy(cores, environ={threads.SHARED_ENV: "0"}) is None
    assert threads.wait_policy(max(1, cores // 2), environ={"LOCAL_WORLD_SIZE": "2"}) == "PASSIVE"
    if cores > 1:
        assert threads.wait_policy(cores - 1, environ={}) == "PASSIVE"  # fewer threads than cores: others run here
    # the user's choice wins; a policy a parent tweetkit exported is decided anew
    assert threads.wait_policy(1, shared=True, environ={"GOMP_SPINCOUNT": "1000"}) is None
    ours = {"OMP_WAIT_POLICY": "PASSIVE", threads.OURS: "PASSIVE"}
    assert threads.wait_policy(cores, environ=ours) is None


def test_the_runtime_spins_alone_and_sleeps_shared(corpus, tmp_path):
    cores = threads.physical_cores(threads.available_cpus())
    alone = pretrain_env(corpus, tmp_path, ["--threads", str(cores)])
    assert "GOMP_SPINCOUNT = '300000'" in alone  # libgomp's default spin
    shared = pretrain_env(corpus, tmp_path, ["--overwrite", "--threads", str(cores), "--shared"])
    assert "GOMP_SPINCOUNT = '0'" in shared
    inherited = pretrain_env(corpus, tmp_path, ["--overwrite", "--threads", str(cores)], TWEETKIT_SHARED="1")
    assert "GOMP_SPINCOUNT = '0'" in inherited
