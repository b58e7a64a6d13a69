"""normalize: tweetkit's normaliser against the plain BERTweet rules, same run, same tweets.

The plain version is tests/bertweet_oracle.py: NLTK's TweetTokenizer, a per-token
function and a str.replace chain, as TweetNormalizer.py writes them.  Both normalise
the same real tweets in this process, in alternating blocks of 5,000 so that the
machine's drift hits both alike; tweetkit's cache starts cold.  Outputs must be
byte-identical.

    python bench/normalize.py [--data ../shared/data] [--emoji-names current]
"""

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

from bertweet_oracle import reference_normalizer  # noqa: E402
from common import DEFAULT_DATA, real_tweets  # noqa: E402

from tweetkit.text.normalize import TweetNormalizer  # noqa: E402

BLOCK = 5_000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--emoji-names", default="current", choices=["current", "bertweet"])
    args = parser.parse_args()
    texts = real_tweets(args.data)
    plain, fast = reference_normalizer(args.emoji_names), TweetNormalizer(args.emoji_names)
    seconds = {"plain": 0.0, "tweetkit": 0.0}
    identical = True
    print(f"{len(texts):,} real tweets from {args.data}; emoji names: {args.emoji_names}")
    print(f"{'tweets':>9} {'plain tw/s':>11} {'tweetkit tw/s':>13} {'ratio':>6}")
    for start in range(0, len(texts), BLOCK):
        block = texts[start : start + BLOCK]
        outputs = {}
        for name, function in (("plain", plain), ("tweetkit", fast)):
            begin = time.perf_counter()
            outputs[name] = [function(t) for t in block]
            seconds[name] += time.perf_counter() - begin
        identical &= outputs["plain"] == outputs["tweetkit"]
        done = start + len(block)
        if done % 50_000 == 0 or done == len(texts):
            print(
                f"{done:>9,} {done / seconds['plain']:>11,.0f} {done / seconds['tweetkit']:>13,.0f} "
                f"{seconds['plain'] / seconds['tweetkit']:>5.1f}x"
            )
    print(f"byte-identical: {identical}")
    if not identical:
        sys.exit("outputs differ")


if __name__ == "__main__":
    main()
