"""The peer of `tweetkit predict` as a whole process: a transformers pipeline at batch 64 over
a JSONL file, every class probability written as JSONL to stdout (what a user would script).

    python bench/peers/pipeline_predict.py MODEL_DIR tweets.jsonl [--batch-size 64] > predicted.jsonl
"""

import argparse
import json
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--field", default="text")
    args = parser.parse_args()
    from transformers import pipeline

    classifier = pipeline("text-classification", model=args.model, tokenizer=args.model, device="cpu", top_k=None)
    with open(args.input, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    outputs = classifier([r[args.field] for r in records], batch_size=args.batch_size, truncation=True, max_length=128)
    for record, scores in zip(records, outputs):
        best = max(scores, key=lambda s: s["score"])
        record.update(pred=best["label"], scores={s["label"]: round(s["score"], 6) for s in scores})
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
