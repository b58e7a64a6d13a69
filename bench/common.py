"""Helpers shared by the benchmarks: real tweets from ../shared/data, child processes."""

import json
import os
import pathlib
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


def run(cmd, label, cwd=None):
    """stdout of a child process, or None (with its stderr tail shown) when it fails."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd or pathlib.Path(__file__).resolve().parent.parent, capture_output=True, text=True
    )
    failed = f", FAILED (exit {proc.returncode})" if proc.returncode else ""
    # Other processes on the machine skew every number; the load average says when.
    print(
        f"  {label}: {time.perf_counter() - start:.0f} s wall, load average {os.getloadavg()[0]:.1f}{failed}",
        flush=True,
    )
    if proc.returncode:
        print("    " + "\n    ".join(proc.stderr.strip().splitlines()[-15:]), flush=True)
        return None
    return proc.stdout
