"""tweetkit langid: add `lang` and `lang_prob` (fastText lid.176), optionally keep some languages."""

from __future__ import annotations

import functools

import click

from tweetkit.errors import ConfigError
from tweetkit.io import Drop
from tweetkit.options import data_options


class LangidStep:
    """The transform: predict a batch, annotate, and drop what --keep/--min-prob exclude."""

    def __init__(self, field: str, model_path: str | None, clean: bool, keep: frozenset | None, min_prob: float):
        from tweetkit.text.langid import LanguageIdentifier

        self.field, self.keep, self.min_prob = field, keep, min_prob
        self.identifier = LanguageIdentifier(model_path, clean=clean)

    def __call__(self, records: list[dict]) -> list:
        predictions = self.identifier.predict([r[self.field] for r in records])
        results: list = []
        for record, (lang, prob) in zip(records, predictions):
            record["lang"], record["lang_prob"] = lang, prob
            if self.keep is not None and lang not in self.keep:
                results.append(Drop("language not kept"))
            elif prob < self.min_prob:
                results.append(Drop("below --min-prob"))
            else:
                results.append(record)
        return results


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
    left) and `lang_prob`.
    """
    from tweetkit.io import run_stream
    from tweetkit.text.langid import LanguageIdentifier

    if keep is not None:
        identifier = LanguageIdentifier(model_path, clean=clean)
        try:
            keep = identifier.canonical_codes(keep)
        except ConfigError as exc:
            raise click.BadParameter(str(exc).removeprefix("--keep: "), param_hint="--keep") from None
    make_step = functools.partial(LangidStep, stream.field, model_path, clean, keep, min_prob)
    run_stream("langid", stream, make_step, text_field=stream.field)
