"""Helpers shared by the benchmarks: real tweets from ../shared/data, child processes."""

import itertools
import json
import os
import pathlib
import re
import subprocess
import time

DEFAULT_DATA = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# Real tweet texts, in this order; the normalisation bench reads as many as it needs.
TWEET_FILES = [
    "raw_tweets/tweets.jsonl",
    "covid_tweets/train.jsonl",
    "covid_tweets/test.jsonl",
    "semeval2017/train.jsonl",
    "semeval2017/test.jsonl",
    "tweeteval/emoji/train.jsonl",
    "tweeteval/emoji/validation.jsonl",
    "tweeteval/emoji/test.jsonl",
]


def read_rows(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def real_tweets(data_dir, files=TWEET_FILES):
    texts = []
    for name in files:
        texts.extend(row["text"] for row in read_rows(pathlib.Path(data_dir) / name))
    return texts


def matmul_gflops(dtype, size, repeats=3, weight_layout=False):
    """GFLOP/s of one size x size matmul on this process's threads: the peak model FLOP
    rates are compared with."""
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    if weight_layout:
        b = b.t()  # a @ W.T, as nn.Linear's forward multiplies
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def run(cmd, label, cwd=None, env=None):
    """(stdout, wall seconds) of a child process; stdout is None (with its stderr tail shown)
    when it fails.  The wall time is the whole process as a user times it: start-up, loading,
    tokenising, the work and writing.  `env`: variables added to the child's environment."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=cwd or pathlib.Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        env={**os.environ, **env} if env else None,
    )
    wall = time.perf_counter() - start
    failed = f", FAILED (exit {proc.returncode})" if proc.returncode else ""
    # Other processes on the machine skew every number; the load average says when.
    print(f"  {label}: {wall:.1f} s wall, load average {os.getloadavg()[0]:.1f}{failed}", flush=True)
    if proc.returncode:
        print("    " + "\n    ".join(proc.stderr.strip().splitlines()[-15:]), flush=True)
        return None, wall
    return proc.stdout, wall


# SemEval-2017 texts carry literal \uXXXX escapes; the benches undo them before normalising.
ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def write_normalized(source, count, path, offset=0, fields=()):
    """Lines offset..offset+count of a JSONL file of tweets, normalised as `tweetkit normalize`
    does, with `fields` (e.g. "label") kept; returns `path`."""
    from tweetkit.text.normalize import TweetNormalizer

    normalize = TweetNormalizer()
    with open(source, encoding="utf-8") as lines, open(path, "w", encoding="utf-8") as out:
        for line in itertools.islice(lines, offset, offset + count):
            record = json.loads(line)
            text = ESCAPE.sub(lambda m: chr(int(m[1], 16)), record["text"])
            kept = {name: record[name] for name in fields}
            out.write(json.dumps({"text": normalize(text), **kept}, ensure_ascii=False) + "\n")
    return path


# The thread settings of a child process are the bench's to choose: none inherited from the shell.
THREAD_VARIABLES = (
    "TWEETKIT_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
)


def clean_env(**extra):
    """os.environ without thread settings, plus `extra`; the repository on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    repo = str(pathlib.Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return {**env, **{k: str(v) for k, v in extra.items()}}
