"""tweetkit dedup: drop retweets, out-of-range lengths, exact and near duplicates; first occurrence wins."""

from __future__ import annotations

import functools

import click

from tweetkit.options import data_options


@click.command(
    "dedup",
    epilog="""\b
Examples:
  tweetkit normalize < tweets.jsonl | tweetkit dedup --drop-retweets --min-tokens 10 --max-tokens 64
  tweetkit dedup --mode exact --dropped dups.jsonl corpus.jsonl > unique.jsonl
  # Many files, compared with each other, in stages of tasks (one output per input):
  tweetkit dedup -o unique/ --dropped dups/ --workers 8 dump/part-*.jsonl.gz
  tweetkit dedup -o /shared/unique/ --ray auto /shared/dump/part-*.jsonl.gz""",
)
@data_options(dropped=True, workers=True)
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
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    help="With -o DIR/: hash partitions of the matching stage; a task holds 1/P of the corpus's "
    "signatures [default: one per input file].",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    help="With -o DIR/: the stages' files (on storage every Ray node sees) [default: DIR/.tweetkit-dedup-work].",
)
@click.option("--keep-work", is_flag=True, help="With -o DIR/: keep the work directory (a rerun skips finished tasks).")
@click.option(
    "--cluster-ids",
    is_flag=True,
    help="With -o DIR/: every record of a duplicate cluster, kept or dropped, gets `cluster_id`, the kept tweet's id.",
)
def command(stream, mode, threshold, num_perm, bands, min_words, drop_retweets, min_tokens, max_tokens, id_field,
            num_shards, shard_index, partitions, work_dir, keep_work, cluster_ids):  # fmt: skip
    """Remove retweets, too short/long tweets, and exact and near duplicates.

    The first occurrence is kept.  Tweets are compared by a key that ignores case,
    links, mentions, a leading "RT @user:", punctuation and emoji.  Every dropped record
    goes to --dropped with `reason` and `dup_of` (the kept twin's id).

    With -o DIR/ and input files, the files are deduplicated against each other in
    stages of tasks (local processes with --workers, or Ray), one output per input,
    with the same result as the streaming path; memory is bounded by a file or a
    partition, not the corpus.  --cluster-ids adds `cluster_id` (the kept tweet's id) to
    every record of a duplicate cluster, in the output and in --dropped.
    """
    from tweetkit.errors import UsageError
    from tweetkit.io import run_stream
    from tweetkit.many_files import end_with_slash, wants_directory
    from tweetkit.text.dedup import NearConfig

    check_numbers(num_shards, shard_index, min_tokens, max_tokens, num_perm, bands)
    config = NearConfig(threshold=threshold, num_perm=num_perm, bands=bands, min_words=min_words)
    if wants_directory(stream.output):
        if num_shards > 1:
            raise UsageError("--num-shards splits the streaming path; with -o DIR/ every file is compared with all")
        staged = dict(id_field=id_field, partitions=partitions, cluster_ids=cluster_ids)
        return run_staged(stream, mode, config, drop_retweets, min_tokens, max_tokens, work_dir, keep_work, **staged)
    if stream.workers > 1 or stream.ray_address or partitions or work_dir or keep_work or cluster_ids:
        raise UsageError(
            "dedup compares each tweet with all before it: --workers, --ray, --partitions, --work-dir, --keep-work "
            f"and --cluster-ids are for the staged path over files: {end_with_slash(stream.output)}"
        )
    from tweetkit.text.steps import dedup_steps

    filters = (drop_retweets, min_tokens, max_tokens, num_shards, shard_index)
    make_step = functools.partial(dedup_steps, stream.field, id_field, mode, config, *filters)
    run_stream("dedup", stream, make_step, text_field=stream.field)


def check_numbers(num_shards, shard_index, min_tokens, max_tokens, num_perm, bands) -> None:
    """Numbers that each pass their flag's range but not together."""
    if shard_index >= num_shards:
        raise click.BadParameter("must be below --num-shards", param_hint="--shard-index")
    if min_tokens is not None and max_tokens is not None and min_tokens > max_tokens:
        raise click.BadParameter(
            f"--min-tokens {min_tokens} is above --max-tokens {max_tokens}: every record would be dropped",
            param_hint="--min-tokens",
        )
    if num_perm % bands:
        raise click.BadParameter("must divide --num-perm", param_hint="--bands")


def run_staged(
    stream, mode, config, drop_retweets, min_tokens, max_tokens, work_dir, keep_work, id_field, partitions, cluster_ids
):
    import os

    from tweetkit.executors import make_executor
    from tweetkit.io import report_counts
    from tweetkit.many_files import FileOutputs
    from tweetkit.reports import log_for
    from tweetkit.text import staged_dedup

    files = FileOutputs.of(stream)
    job = staged_dedup.Job(
        files=files,
        work=os.path.abspath(work_dir or os.path.join(stream.output, ".tweetkit-dedup-work")),
        field=stream.field,
        on_error=stream.on_error,
        id_field=id_field,
        mode=mode,
        config=config,
        drop_retweets=drop_retweets,
        min_tokens=min_tokens,
        max_tokens=max_tokens,
        partitions=partitions or len(files.inputs),
        cluster_ids=cluster_ids,
    )
    executor = make_executor(stream.workers, stream.ray_address)
    log = log_for("dedup", stream.quiet or not stream.progress)
    try:
        log(f"{len(files.inputs)} files, {job.partitions} partitions, on {executor.describe()}")
        counts, _ = staged_dedup.run(job, stream, executor, log, keep_work=keep_work)
    finally:
        executor.close()
    report_counts("dedup", stream, counts)
