"""startup: how long a user waits for the first output of a command on one line of input.

Shell pipelines and cron jobs over many small files pay the start-up per process, so this
times whole processes: `tweetkit --help`, each data command on one tweet, and `predict` on
one tweet with a linear model and with a fine-tuned MiniLM (a head trained for one step:
start-up does not depend on how well it learned).  Median of --repeats runs each.

    python bench/startup.py [--repeats 5]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from predict import minilm_path  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
TWEETKIT = [sys.executable, "-m", "tweetkit"]


def seconds(command, stdin: bytes, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, input=stdin, capture_output=True, check=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def models(work: pathlib.Path) -> dict:
    """A linear classifier and a MiniLM classifier (one training step), on the examples."""
    train = str(REPO / "examples" / "sentiment_train.jsonl")
    common = ["--task", "classification", "--train", train, "-q"]
    linear = [*TWEETKIT, "finetune", "--model", "linear", *common, "-o", str(work / "linear")]
    subprocess.run(linear, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*TWEETKIT, "finetune", "--model", minilm_path(), *common, "--max-steps", "1",
                    "-o", str(work / "minilm")], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return {"linear": str(work / "linear"), "MiniLM": str(work / "minilm")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-startup-"))
    line = json.dumps({"text": "@user the game was so good tonight 😂 https://t.co/x"}).encode() + b"\n"
    directories = models(work)
    runs = {
        "tweetkit --help": ([*TWEETKIT, "--help"], b""),
        **{f"{name} (one tweet)": ([*TWEETKIT, name], line) for name in ("normalize", "langid", "dedup", "stats")},
        **{
            f"predict, {name} model (one tweet)": ([*TWEETKIT, "predict", "--model", path], line)
            for name, path in directories.items()
        },  # fmt: skip
    }
    print(f"whole processes, median of {args.repeats}, {os.cpu_count()} CPUs")
    results = {}
    for name, (command, stdin) in runs.items():
        results[name] = seconds(command, stdin, args.repeats)
        print(f"  {name:<36} {results[name]:6.2f} s")
    return results


if __name__ == "__main__":
    main()
