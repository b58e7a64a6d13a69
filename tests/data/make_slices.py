"""Regenerate the dataset slices under tests/data/ from ../shared/data (see PROVENANCE.md).

    python tests/data/make_slices.py [--data ../shared/data]

Each slice is the first lines of one source file, byte for byte; two keep only the rows of the
sources whose terms allow it (see PROVENANCE.md). The tests read nothing else."""

import argparse
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent

# relative path -> how many leading lines the tests use
FIRST_LINES = {
    "semeval2017/train.jsonl": 1200,
    "semeval2017/test.jsonl": 600,
    "tweeteval/irony/train.jsonl": 600,
    "tweeteval/irony/validation.jsonl": 200,
    "tweeteval/irony/test.jsonl": 300,
    "tweeteval/emotion/train.jsonl": 400,
    "tweeteval/emotion/test.jsonl": 200,
    "wnut17/train.jsonl": 300,
    "wnut17/validation.jsonl": 80,
    "wnut17/test.jsonl": 200,
    "ark_pos/train.jsonl": 300,
    "ark_pos/validation.jsonl": 150,
    "ark_pos/test.jsonl": 100,
}
# The ARK rows of raw_tweets (its other source may not be redistributed): the first 400 ark_oct27 lines.
RAW_TWEETS, RAW_SOURCE, RAW_LINES = "raw_tweets/tweets.jsonl", "ark_oct27", 400
# XLM-T's validation set is grouped by language: the first 50 lines of each of its 8 languages.
XLMT, XLMT_PER_LANGUAGE = "xlmt_sentiment/validation.jsonl", 50


def first_lines(path: pathlib.Path, count: int, keep=lambda row: True) -> str:
    kept = []
    with open(path, encoding="utf-8", newline="") as handle:
        for line in handle:
            if keep(json.loads(line)):
                kept.append(line)
                if len(kept) == count:
                    return "".join(kept)
    raise SystemExit(f"{path}: fewer than {count} lines to take")


def per_language(path: pathlib.Path, count: int) -> str:
    taken: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for line in handle:
            rows = taken.setdefault(json.loads(line)["lang"], [])
            if len(rows) < count:
                rows.append(line)
    return "".join(line for rows in taken.values() for line in rows)


def slices(data: pathlib.Path) -> dict[str, str]:
    made = {relative: first_lines(data / relative, count) for relative, count in FIRST_LINES.items()}
    made[RAW_TWEETS] = first_lines(data / RAW_TWEETS, RAW_LINES, lambda row: row["source"] == RAW_SOURCE)
    made[XLMT] = per_language(data / XLMT, XLMT_PER_LANGUAGE)
    return made


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=HERE.parent.parent.parent / "shared" / "data")
    args = parser.parse_args()
    for relative, text in slices(args.data).items():
        target = HERE / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="")
        print(f"{relative}: {text.count(chr(10))} lines, {len(text.encode('utf-8')):,} bytes")


if __name__ == "__main__":
    main()
