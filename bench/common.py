"""Helpers shared by the benchmarks: real tweets from ../shared/data."""

import json
import pathlib

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
