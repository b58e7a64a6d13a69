"""int8 choices for `predict --precision int8`: label agreement with fp32 and speed, one run.

What bounds int8's agreement with fp32 is how close the classifier's top two classes
are: the share of tweets whose fp32 margin is tiny is printed first.  Then, on the same
tweets and batches (sorted by length, batch 64), each variant of dynamic quantization:
one scale per weight matrix or per output channel (tweetkit's), and the first K encoder
layers left in fp32 (the layers whose quantization moves the logits most).

    python bench/int8_layers.py [--model DIR] [--tweets 3000] [--threads 2]

Without --model, the packaged MiniLM fine-tuned as bench/predict.py does (2,000 SemEval-2017
train tweets, 2 epochs).
"""

import argparse
import copy
import os
import pathlib
import shutil
import sys
import tempfile
import time
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import DEFAULT_DATA, read_rows, write_normalized  # noqa: E402
from predict import finetuned_classifier  # noqa: E402


def variants(model, layers: int):
    """(name, quantization spec) pairs: names of the encoder's Linear layers -> qconfig."""
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    prefix = model.base_model_prefix + ".encoder."
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith(prefix)]

    def layer_of(name):
        return int(name[len(prefix) :].split(".")[1])  # encoder.layer.N....

    yield "per matrix, all layers", {n: default_dynamic_qconfig for n in linear}
    for keep in range(layers):
        name = "per channel, all layers (tweetkit)" if keep == 0 else f"per channel, layers {keep}+ (0-{keep - 1} fp32)"
        yield name, {n: per_channel_dynamic_qconfig for n in linear if layer_of(n) >= keep}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--model", help="a fine-tuned classifier [default: MiniLM fine-tuned here]")
    parser.add_argument("--tweets", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-layers", type=int, default=4, help="try leaving the first 0..N-1 layers fp32")
    args = parser.parse_args()

    from tweetkit import threads

    threads.apply(args.threads)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    warnings.simplefilter("ignore")  # torch.ao's deprecation notice
    work = tempfile.mkdtemp(prefix="bench-int8-")
    test = write_normalized(
        pathlib.Path(args.data) / "semeval2017/test.jsonl", args.tweets, os.path.join(work, "t.jsonl")
    )
    directory = args.model or finetuned_classifier(work, args.data, 2000, 2, args.threads)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    texts = sorted((r["text"] for r in read_rows(test)), key=len)
    batches = [
        tokenizer(texts[i : i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
        for i in range(0, len(texts), 64)
    ]

    def timed_logits(model):
        with torch.inference_mode():
            model(**batches[0])  # warm-up
            start = time.perf_counter()
            logits = torch.cat([model(**batch).logits for batch in batches])
            return logits, len(texts) / (time.perf_counter() - start)

    base = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    reference, fp32_rate = timed_logits(base)
    top2 = reference.topk(2, -1).values
    margin = top2[:, 0] - top2[:, 1]
    print(f"{len(texts):,} SemEval-2017 test tweets, {args.threads} threads; fp32 {fp32_rate:,.1f} tweets/s")
    print("fp32 margin between the top two classes: " + ", ".join(
        f"< {m}: {(margin < m).float().mean().item():.1%}" for m in (0.02, 0.05, 0.1)))  # fmt: skip
    print(f"\n{'variant':<36} {'labels = fp32':>13} {'mean |dlogit|':>13} {'tweets/s':>9} {'x fp32':>7}")
    layers = base.config.num_hidden_layers
    for name, spec in variants(base, min(args.keep_layers, layers)):
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(base), spec, dtype=torch.qint8)
        logits, rate = timed_logits(quantized)
        agreement = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
        error = (logits - reference).abs().mean().item()
        print(f"{name:<36} {agreement:>13.2%} {error:>13.4f} {rate:>9,.1f} {rate / fp32_rate:>6.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
