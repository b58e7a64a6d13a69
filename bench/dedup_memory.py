"""dedup: memory held per unique tweet, measured with tracemalloc on real tweets.

python bench/dedup_memory.py [--data ../shared/data]
"""

import argparse
import gc
import pathlib
import sys
import tracemalloc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import DEFAULT_DATA, real_tweets  # noqa: E402

from tweetkit.text.dedup import Deduplicator, dedup_key  # noqa: E402


def measure(mode, keys):
    gc.collect()
    tracemalloc.start()
    dedup = Deduplicator(mode)
    kept = 0
    for start in range(0, len(keys), 512):
        batch = keys[start : start + 512]
        for prepared in dedup.prepare(batch):
            kept += dedup.check(prepared, f"record {start}") is None
    dedup.hasher and dedup.hasher._word_hashes.clear()  # a bounded cache, not per-tweet state
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return kept, held


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    args = parser.parse_args()
    keys = [dedup_key(t) for t in real_tweets(args.data)]
    print(f"{len(keys):,} real tweets")
    print(f"{'mode':6} {'kept':>8} {'bytes/kept tweet':>17} {'MB per million kept':>20}")
    for mode in ("exact", "near"):
        kept, held = measure(mode, keys)
        print(f"{mode:6} {kept:>8,} {held / kept:>17,.0f} {held / kept:>20,.0f}")


if __name__ == "__main__":
    main()
