"""tweetkit normalize: BERTweet's normalisation of the text field, record by record."""

from __future__ import annotations

import functools

import click

from tweetkit.options import data_options


@click.command(
    "normalize",
    epilog="""\b
Examples:
  tweetkit normalize tweets.jsonl > normalized.jsonl
  zcat dump.jsonl.gz | tweetkit normalize --emoji-names bertweet --workers 2
  tweetkit normalize --output-field norm --lexicon slang.tsv tweets.jsonl""",
)
@data_options(workers=True)
@click.option(
    "--emoji-names",
    type=click.Choice(["current", "bertweet"]),
    default="current",
    show_default=True,
    help="'current': the installed emoji package's names; 'bertweet': emoji 0.6.0's, as in bertweet-base's vocabulary.",
)
@click.option("--output-field", default=None, help="Write the normalised text here [default: replace --field].")
@click.option(
    "--lexicon",
    type=click.Path(exists=True, dir_okay=False),
    help="'noisy<TAB>canonical' whole-token replacements (hard normalisation).",
)
def command(stream, emoji_names, output_field, lexicon):
    """Normalise tweets as BERTweet did: @USER, HTTPURL, demojized emoji, split clitics.

    Byte-identical to VinAIResearch/BERTweet's TweetNormalizer.py, and faster (docs/benchmarks.md).
    """
    from tweetkit.many_files import run_data_command
    from tweetkit.text.normalize import load_lexicon
    from tweetkit.text.steps import Normalize

    make_step = functools.partial(
        Normalize,
        stream.field,
        output_field or stream.field,
        emoji_names,
        load_lexicon(lexicon) if lexicon else None,
    )
    run_data_command("normalize", stream, make_step, text_field=stream.field)
