"""tweetkit langid: add `lang` and `lang_prob` (fastText lid.176), optionally keep some languages."""

from __future__ import annotations

import functools

import click

from tweetkit.errors import ConfigError
from tweetkit.options import data_options


def parse_languages(ctx, param, value):
    if value is None:
        return None
    codes = frozenset(code.strip() for code in value.split(",") if code.strip())
    if not codes:
        raise click.BadParameter("give language codes, e.g. en,es")
    return codes


@click.command(
    "langid",
    epilog="""\b
Examples:
  tweetkit langid tweets.jsonl > with_lang.jsonl
  zcat dump.jsonl.gz | tweetkit langid --keep en --min-prob 0.5 --dropped other.jsonl
  tweetkit langid --model lid.176.bin --keep es,pt tweets.jsonl""",
)
@data_options(dropped=True, workers=True)
@click.option(
    "--keep",
    callback=parse_languages,
    help="Comma-separated codes to keep, any case (lid.176: en, es, zh, ...); unknown codes are refused.",
)
@click.option(
    "--min-prob",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Drop records predicted with less confidence.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, dir_okay=False),
    help="A fastText LID model (lid.176.bin, GlotLID) [default: bundled lid.176.ftz].",
)
@click.option(
    "--clean/--no-clean",
    default=True,
    show_default=True,
    help="Strip links, mentions, emoji, '#' and case before predicting (the text is not changed).",
)
def command(stream, keep, min_prob, model_path, clean):
    """Identify the language of each tweet with fastText (lid.176), tweet-aware.

    Adds `lang` (ISO 639 code as the model gives it; `und` when nothing readable is
    left) and `lang_prob`.  A record's own `lang` (Twitter's, or a gold language) is
    not lost: it moves to `lang_original`, unless that field exists already.
    """
    from tweetkit.many_files import run_data_command
    from tweetkit.text.langid import LanguageIdentifier

    if keep is not None:
        identifier = LanguageIdentifier(model_path, clean=clean)
        try:
            keep = identifier.canonical_codes(keep)
        except ConfigError as exc:
            raise click.BadParameter(str(exc).removeprefix("--keep: "), param_hint="--keep") from None
    from tweetkit.text.steps import Langid

    make_step = functools.partial(Langid, stream.field, model_path, clean, keep, min_prob)
    run_data_command("langid", stream, make_step, text_field=stream.field)
