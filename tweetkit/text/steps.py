"""The data steps: transforms over batches of records, as `io.run_stream` runs them.

A step takes a list of records and returns, for each, the record to write, a
`Drop(reason)` or a `Routed(name, record)`.  Filters only answer "keep?" and, if not,
why; `Chain` runs several in order, each seeing what the previous kept.  Steps are
plain classes built from their settings, so that worker processes can build their own.
"""

from __future__ import annotations

from tweetkit.io import Drop, Routed


class Chain:
    """Steps in order; a record one drops (or routes) is not shown to the next.  A step
    with `wants_ordinals` also receives each record's 1-based position in the input."""

    def __init__(self, *steps):
        self.steps, self.seen = steps, 0

    def __call__(self, records: list[dict]) -> list:
        results: list = [None] * len(records)
        alive = list(range(len(records)))
        for step in self.steps:
            chosen = [records[i] for i in alive]
            outs = (
                step(chosen, [self.seen + i + 1 for i in alive])
                if getattr(step, "wants_ordinals", False)
                else step(chosen)
            )
            survivors = []
            for i, out in zip(alive, outs):
                if isinstance(out, (Drop, Routed)):
                    results[i] = out
                else:
                    records[i] = out
                    survivors.append(i)
            alive = survivors
        for i in alive:
            results[i] = records[i]
        self.seen += len(records)
        return results


class Normalize:
    """BERTweet's normalisation of `field` into `output_field`."""

    def __init__(self, field: str, output_field: str, emoji_names: str, lexicon: dict | None):
        from tweetkit.text.normalize import TweetNormalizer

        self.field, self.output_field = field, output_field
        self.normalizer = TweetNormalizer(emoji_names=emoji_names, lexicon=lexicon)

    def __call__(self, records: list[dict]) -> list[dict]:
        normalize, field, output_field = self.normalizer, self.field, self.output_field
        for record in records:
            record[output_field] = normalize(record[field])
        return records


class Langid:
    """Predict a batch, add `lang` and `lang_prob`, drop what --keep/--min-prob exclude.
    A `lang` already there (Twitter's own, a gold label) is kept as `lang_original`."""

    def __init__(self, field: str, model_path: str | None, clean: bool, keep: frozenset | None, min_prob: float):
        from tweetkit.text.langid import LanguageIdentifier

        self.field, self.keep, self.min_prob = field, keep, min_prob
        self.identifier = LanguageIdentifier(model_path, clean=clean)

    def __call__(self, records: list[dict]) -> list:
        predictions = self.identifier.predict([r[self.field] for r in records])
        results: list = []
        for record, (lang, prob) in zip(records, predictions):
            if "lang" in record:
                record.setdefault("lang_original", record["lang"])
            record["lang"], record["lang_prob"] = lang, prob
            if self.keep is not None and lang not in self.keep:
                results.append(Drop("language not kept"))
            elif prob < self.min_prob:
                results.append(Drop("below --min-prob"))
            else:
                results.append(record)
        return results


class ShardFilter:
    """Keep the records whose dedup key falls in shard `index` of `count` (exact twins share one)."""

    def __init__(self, field: str, count: int, index: int):
        self.field, self.count, self.index = field, count, index

    def __call__(self, records: list[dict]) -> list:
        from tweetkit.text.dedup import dedup_key, key_hash

        # The top bits of a different hash than the dedup table's, so shards stay balanced.
        shard = lambda key: (key_hash("shard:" + key) >> 32) % self.count  # noqa: E731
        return [
            r if shard(dedup_key(r[self.field])) == self.index else Drop("other shard", write=False) for r in records
        ]


class RetweetFilter:
    """Drop 'RT @user:' tweets and records flagged is_retweet or carrying retweeted_status."""

    def __init__(self, field: str):
        self.field = field

    def __call__(self, records: list[dict]) -> list:
        from tweetkit.text.dedup import is_retweet

        return [Drop("retweet") if is_retweet(r, r[self.field]) else r for r in records]


class LengthFilter:
    """Drop tweets with fewer than `min_tokens` or more than `max_tokens` whitespace tokens."""

    def __init__(self, field: str, min_tokens: int | None, max_tokens: int | None):
        self.field, self.min_tokens, self.max_tokens = field, min_tokens, max_tokens

    def __call__(self, records: list[dict]) -> list:
        results: list = []
        for record in records:
            tokens = len(record[self.field].split())
            if self.min_tokens is not None and tokens < self.min_tokens:
                results.append(Drop("too few tokens"))
            elif self.max_tokens is not None and tokens > self.max_tokens:
                results.append(Drop("too many tokens"))
            else:
                results.append(record)
        return results


class Deduplicate:
    """Exact or near duplicates of an earlier record are dropped, with `dup_of` naming the
    kept one by `id_field` (or 'record N', its position in the input)."""

    wants_ordinals = True

    def __init__(self, field: str, id_field: str, mode: str, config):
        from tweetkit.text.dedup import Deduplicator

        self.field, self.id_field = field, id_field
        self.dedup = Deduplicator(mode, config)

    def __call__(self, records: list[dict], ordinals: list[int]) -> list:
        from tweetkit.text.dedup import dedup_key, record_label

        prepared = self.dedup.prepare([dedup_key(r[self.field]) for r in records])
        results: list = []
        for record, ordinal, item in zip(records, ordinals, prepared):
            found = self.dedup.check(item, record_label(record, self.id_field, ordinal))
            results.append(record if found is None else Drop(found[0], {"dup_of": found[1]}))
        return results


def dedup_steps(
    field, id_field, mode, config, drop_retweets, min_tokens, max_tokens, num_shards=1, shard_index=0
) -> Chain:
    """What `tweetkit dedup` runs, in this order: shard, retweets, length, duplicates."""
    shard = [ShardFilter(field, num_shards, shard_index)] if num_shards > 1 else []
    return Chain(
        *shard,
        *dedup_prefilters(field, drop_retweets, min_tokens, max_tokens),
        Deduplicate(field, id_field, mode, config),
    )


def dedup_prefilters(field, drop_retweets, min_tokens, max_tokens) -> list:
    """What dedup drops before looking for duplicates, in this order; the streaming and
    the staged path both run these."""
    steps: list = []
    if drop_retweets:
        steps.append(RetweetFilter(field))
    if min_tokens is not None or max_tokens is not None:
        steps.append(LengthFilter(field, min_tokens, max_tokens))
    return steps


def split_of(key: str, seed: int, bounds: list[tuple[float, str]]) -> str:
    """The split a dedup key falls in: a uniform draw from a hash of (seed, key)."""
    from tweetkit.text.dedup import key_hash

    draw = key_hash(f"{seed}\x00{key}") / 2**64
    for upper, name in bounds:
        if draw < upper:
            return name
    return bounds[-1][1]


class Split:
    """Route each record to the split of its dedup key, or tag it with `split`."""

    def __init__(self, field: str, ratios: dict[str, float], seed: int, tag_only: bool):
        self.field, self.seed, self.tag_only = field, seed, tag_only
        cumulative, self.bounds = 0.0, []
        for name, ratio in ratios.items():
            cumulative += ratio
            self.bounds.append((cumulative, name))

    def __call__(self, records: list[dict]) -> list:
        from tweetkit.text.dedup import dedup_key

        results = []
        for record in records:
            name = split_of(dedup_key(record[self.field]), self.seed, self.bounds)
            if self.tag_only:
                record["split"] = name
                results.append(record)
            else:
                results.append(Routed(name, record))
        return results
