"""Each training path under a 2-process torchrun on gloo, N times: how many finish, how many hang.

A hang is a run past --deadline seconds (its process group is killed).  The paths are those
tests/test_torchrun.py checks once each: MLM pretraining with validation, SimCSE from a
pretrained model, finetune --seeds 1,2 (the path that hung when the process group was made
again for every seed), and finetune of each other task kind.

    python scripts/torchrun_repeats.py [--repeats 10] [--paths pretrain,simcse,seeds,tagging]
"""

import argparse
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def build(work: pathlib.Path) -> None:
    """The micro model, tokenizer and data of tests/test_torchrun.py, in `work`."""
    import test_torchrun

    test_torchrun.make_base(work)


def commands(work: pathlib.Path) -> dict:
    import test_torchrun as t

    validation = ["--validation", work / "validation.jsonl", "--eval-every", "2"]
    simcse = ["pretrain", "--init-from", work / "mlm", "--tokenizer", work / "tok", "--objective", "simcse",
              "--train", work / "train.jsonl", "--cache-dir", work / "cache", "--batch-size", "8", "--max-steps", "3",
              "-q", "-o", work / "out"]  # fmt: skip
    return {
        "pretrain": t.pretrain_args(work, work / "out", "--max-steps", "4", *validation),
        "simcse": simcse,
        "seeds": t.finetune_args(work, "classification", work / "out", "--seeds", "1,2"),
        "multilabel": t.finetune_args(work, "multilabel", work / "out", "--epochs", "1"),
        "regression": t.finetune_args(work, "regression", work / "out", "--epochs", "1"),
        "tagging": t.finetune_args(work, "tagging", work / "out", "--epochs", "1"),
    }


def run_once(args, deadline: float) -> str:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tweetkit"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    process = subprocess.Popen([*command, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env, start_new_session=True)  # fmt: skip
    try:
        _, err = process.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return "hang"
    return "ok" if process.returncode == 0 else f"exit {process.returncode}: {err.decode()[-4000:]}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--paths", default="pretrain,simcse,seeds,multilabel,regression,tagging")
    parser.add_argument("--deadline", type=float, default=240)
    args = parser.parse_args(argv)
    work = pathlib.Path(tempfile.mkdtemp(prefix="torchrun-repeats-"))
    build(work)
    every = commands(work)
    for name in args.paths.split(","):
        outcomes, began = [], time.perf_counter()
        for _ in range(args.repeats):
            shutil.rmtree(work / "out", ignore_errors=True)
            outcomes.append(run_once(every[name], args.deadline))
        passed = outcomes.count("ok")
        seconds = (time.perf_counter() - began) / args.repeats
        failures = "; ".join(sorted({o for o in outcomes if o != "ok"}))
        print(f"{name:<11} {passed} of {args.repeats} passed, {outcomes.count('hang')} hung, {seconds:.0f} s a run"
              + (f" ({failures})" if failures else ""), flush=True)  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
