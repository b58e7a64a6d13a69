"""train-bpe: the two training backends on the same real tweets, time and peak memory.

Every tweet text in ../shared/data (TweetEval, SemEval-2017, COVID, raw, XLM-T),
normalised, repeated until there are --lines of them (the shared data holds fewer
distinct tweets than that).  Each backend x algorithm trains in its own process, so
its peak resident memory is its own.

    python bench/train_bpe.py [--data ../shared/data] [--lines 500000] [--vocab-size 32000]
"""

import argparse
import glob
import json
import os
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import DEFAULT_DATA  # noqa: E402

CHILD = """
import json, resource, sys, time
from tweetkit import tokenizers as tk
texts = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
start = time.perf_counter()
train = tk.train_hf if sys.argv[2] == "hf" else tk.train_sentencepiece
tokenizer = train(texts, sys.argv[3], int(sys.argv[4]))
seconds = time.perf_counter() - start
measured = tk.pieces_per_tweet(tokenizer, texts[:50000])
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "vocab": tokenizer.get_vocab_size(), **measured}))
"""


def corpus_file(data_dir, lines):
    from tweetkit.text.normalize import TweetNormalizer

    normalize, texts, seen = TweetNormalizer(), [], set()
    for path in sorted(glob.glob(f"{data_dir}/**/*.jsonl", recursive=True)):
        if "/raw/" in path or path.endswith("labels.jsonl"):
            continue
        for line in open(path, encoding="utf-8"):
            text = json.loads(line).get("text")
            if isinstance(text, str) and text not in seen:
                seen.add(text)
                texts.append(normalize(text))
    distinct = len(texts)
    handle = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8")
    for i in range(lines):
        handle.write(json.dumps({"text": texts[i % distinct]}, ensure_ascii=False) + "\n")
    handle.close()
    return handle.name, distinct


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--vocab-size", type=int, default=32_000)
    args = parser.parse_args()
    path, distinct = corpus_file(args.data, args.lines)
    print(f"{args.lines:,} tweets ({distinct:,} distinct real tweets, normalised), vocab {args.vocab_size:,}")
    print(f"{'backend':<14} {'algorithm':<9} {'seconds':>8} {'peak MB':>8} {'pieces/tweet':>13} {'unk share':>10}")
    results = {}
    for backend in ("hf", "sentencepiece"):
        for algorithm in ("bpe", "unigram"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, path, backend, algorithm, str(args.vocab_size)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = results[backend, algorithm] = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{backend:<14} {algorithm:<9} {r['seconds']:>8.1f} {r['peak_rss_mb']:>8.0f} "
                f"{r['pieces_per_tweet_mean']:>13.2f} {r['unknown_share']:>10.5f}"
            )
    os.unlink(path)
    for algorithm in ("bpe", "unigram"):
        hf, sp = results["hf", algorithm], results["sentencepiece", algorithm]
        print(
            f"{algorithm}: sentencepiece / hf time {sp['seconds'] / hf['seconds']:.2f}x, "
            f"memory {sp['peak_rss_mb'] / hf['peak_rss_mb']:.2f}x"
        )


if __name__ == "__main__":
    main()
