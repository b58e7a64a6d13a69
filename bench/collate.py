"""collate: how long the training loop waits for one step's packed MLM batch.

On a GPU the collation runs in a thread beside the step (train.loop.Batches): a batch that
takes longer to build than the device takes to run it leaves the device idle.  This times
MLMTask.collate (packing, masking, the block-diagonal attention) and SimCSETask.collate on
ROWS packed rows of 128 tokens of real tweets, single-threaded, as the loop's thread does.

    python bench/collate.py [--data ../shared/data] [--rows 256] [--repeats 30]
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import DEFAULT_DATA, real_tweets  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--tweets", type=int, default=40000)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from predict import minilm_path

    from tweetkit.io import StreamOptions
    from tweetkit.modeling import cpu_has_native_bf16, load_tokenizer
    from tweetkit.tasks.contrastive import SimCSETask
    from tweetkit.tasks.mlm import MLMTask, tokenize_corpus

    texts = real_tweets(args.data, ["semeval2017/train.jsonl"])[: args.tweets]
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-collate-"))
    corpus_path = work / "corpus.jsonl"
    import json

    corpus_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    tokenizer = load_tokenizer(minilm_path())
    corpus = tokenize_corpus([str(corpus_path)], tokenizer, StreamOptions(quiet=True), str(work), lambda m: None)
    tasks = {
        "mlm": MLMTask(corpus, None, tokenizer, 128, 1, 0, mask_prob=0.15),
        "simcse": SimCSETask(corpus, None, tokenizer, 128, 1, 0),
    }
    unit = "native bf16 (AVX512-BF16/AMX)" if cpu_has_native_bf16() else "no native bf16 (AVX2)"
    print(
        f"CPU: {unit}, 1 thread; {len(texts):,} SemEval-2017 tweets, {args.rows} packed rows of <= 128 tokens per batch"
    )
    for name, task in tasks.items():
        rows = task.num_examples()
        times = []
        for repeat in range(args.repeats):
            start = (repeat * args.rows) % max(1, rows - args.rows)
            began = time.perf_counter()
            task.collate(list(range(start, start + args.rows)), epoch=repeat)
            times.append(time.perf_counter() - began)
        print(f"{name:<7} collate: median {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
