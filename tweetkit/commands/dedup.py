"""tweetkit dedup: drop retweets, out-of-range lengths, exact and near duplicates; first occurrence wins."""

from __future__ import annotations

import functools

import click

from tweetkit.io import Drop
from tweetkit.options import data_options


class DedupStep:
    """The transform: filters in a fixed order (shard, retweet, length, exact, near)."""

    def __init__(self, field, id_field, mode, config, drop_retweets, min_tokens, max_tokens, num_shards, shard_index):
        from tweetkit.text.dedup import Deduplicator

        self.field, self.id_field = field, id_field
        self.drop_retweets, self.min_tokens, self.max_tokens = drop_retweets, min_tokens, max_tokens
        self.num_shards, self.shard_index = num_shards, shard_index
        self.dedup = Deduplicator(mode, config)
        self.seen = 0

    def __call__(self, records: list[dict]) -> list:
        from tweetkit.text.dedup import dedup_key, is_retweet

        results: list = [None] * len(records)
        candidates, keys = [], []
        for i, record in enumerate(records):
            self.seen += 1
            text = record[self.field]
            key = dedup_key(text)
            if self.num_shards > 1 and self.dedup_shard(key) != self.shard_index:
                results[i] = Drop("other shard", write=False)
            elif self.drop_retweets and is_retweet(record, text):
                results[i] = Drop("retweet")
            elif self.min_tokens is not None and len(text.split()) < self.min_tokens:
                results[i] = Drop("too few tokens")
            elif self.max_tokens is not None and len(text.split()) > self.max_tokens:
                results[i] = Drop("too many tokens")
            else:
                label = record.get(self.id_field)
                candidates.append((i, record, str(label) if label is not None else f"record {self.seen}"))
                keys.append(key)
        for (i, record, label), prepared in zip(candidates, self.dedup.prepare(keys)):
            found = self.dedup.check(prepared, label)
            results[i] = record if found is None else Drop(found[0], {"dup_of": found[1]})
        return results

    def dedup_shard(self, key: str) -> int:
        from tweetkit.text.dedup import key_hash

        # The top bits of a different hash than the table's, so shards stay balanced.
        return (key_hash("shard:" + key) >> 32) % self.num_shards


@click.command(
    "dedup",
    epilog="""\b
Examples:
  tweetkit normalize < tweets.jsonl | tweetkit dedup --drop-retweets --min-tokens 10 --max-tokens 64
  tweetkit dedup --mode exact --dropped dups.jsonl corpus.jsonl > unique.jsonl
  # 4 shards, each an independent process (GNU parallel, Slurm array):
  parallel 'tweetkit dedup --num-shards 4 --shard-index {} corpus.jsonl > part{}.jsonl' ::: 0 1 2 3""",
)
@data_options(dropped=True)
@click.option(
    "--mode",
    type=click.Choice(["near", "exact"]),
    default="near",
    show_default=True,
    help="near: MinHash-LSH on words and word pairs, verified; exact: identical keys only.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.7,
    show_default=True,
    help="Jaccard similarity at which a tweet is a near duplicate.",
)
@click.option("--num-perm", type=click.IntRange(min=1), default=64, show_default=True, help="MinHash permutations.")
@click.option(
    "--bands", type=click.IntRange(min=1), default=16, show_default=True, help="LSH bands (must divide --num-perm)."
)
@click.option(
    "--min-words",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Keys with fewer distinct words are only matched exactly.",
)
@click.option(
    "--drop-retweets", is_flag=True, help="Drop 'RT @user:' tweets and records flagged is_retweet/retweeted_status."
)
@click.option(
    "--min-tokens", type=click.IntRange(min=0), help="Drop tweets with fewer whitespace tokens (BERTweet: 10)."
)
@click.option(
    "--max-tokens", type=click.IntRange(min=1), help="Drop tweets with more whitespace tokens (BERTweet: 64)."
)
@click.option("--id-field", default="id", show_default=True, help="Field naming a record in dup_of (else 'record N').")
@click.option(
    "--num-shards",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Split the key space into K shards ...",
)
@click.option(
    "--shard-index",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="... and keep only shard I (exact twins share a shard).",
)
def command(
    stream,
    mode,
    threshold,
    num_perm,
    bands,
    min_words,
    drop_retweets,
    min_tokens,
    max_tokens,
    id_field,
    num_shards,
    shard_index,
):
    """Remove retweets, too short/long tweets, and exact and near duplicates.

    The first occurrence is kept.  Tweets are compared by a key that ignores case,
    links, mentions, a leading "RT @user:", punctuation and emoji.  Every dropped record
    goes to --dropped with `reason` and `dup_of` (the kept twin's id).
    """
    from tweetkit.io import run_stream
    from tweetkit.text.dedup import NearConfig

    if shard_index >= num_shards:
        raise click.BadParameter("must be below --num-shards", param_hint="--shard-index")
    if min_tokens is not None and max_tokens is not None and min_tokens > max_tokens:
        raise click.BadParameter(
            f"--min-tokens {min_tokens} is above --max-tokens {max_tokens}: every record would be dropped",
            param_hint="--min-tokens",
        )
    if num_perm % bands:
        raise click.BadParameter("must divide --num-perm", param_hint="--bands")
    config = NearConfig(threshold=threshold, num_perm=num_perm, bands=bands, min_words=min_words)
    make_step = functools.partial(
        DedupStep, stream.field, id_field, mode, config, drop_retweets, min_tokens, max_tokens, num_shards, shard_index
    )
    run_stream("dedup", stream, make_step, text_field=stream.field)
