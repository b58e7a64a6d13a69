"""tagging baseline: balanced vs unweighted classes for `finetune --model tfidf --task tagging`.

Fits the per-word logistic-regression tagger (tweetkit.linear) on WNUT-17 (BIO NER) and
ARK (POS) train, both ways, and scores the official validation split with tweetkit's scorer
(seqeval entity F1 for BIO, token accuracy otherwise). finetune's rule (balanced for BIO tags
only) follows these figures.

    python bench/tagging_baseline.py [--data ../shared/data]
"""

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from common import DEFAULT_DATA  # noqa: E402

from tweetkit import linear, metrics  # noqa: E402


def read(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()
    print("| data | class weights | validation metric | score | fit s |", "|---|---|---|---:|---:|", sep="\n")
    for name in ("wnut17", "ark_pos"):
        train, validation = (read(pathlib.Path(args.data, name, f"{split}.jsonl")) for split in ("train", "validation"))
        for balanced in (False, True):
            started = time.perf_counter()
            pipeline = linear.fit(
                "tagging", [r["tokens"] for r in train], [r["tags"] for r in train], balanced=balanced
            )
            seconds = time.perf_counter() - started
            scores = metrics.tagging_metrics(
                [r["tags"] for r in validation], linear.predict(pipeline, "tagging", [r["tokens"] for r in validation])
            )
            metric = "f1" if "f1" in scores else "token_accuracy"
            print(
                f"| {name} | {'balanced' if balanced else 'none'} | {metric} | "
                f"{100 * scores[metric]:.1f} | {seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
