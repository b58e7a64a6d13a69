"""tweetkit stats: corpus statistics, as JSON on stdout and a table on stderr."""

from __future__ import annotations

import json
import sys
from collections import Counter

import click

from tweetkit.metrics import percentile
from tweetkit.options import data_options
from tweetkit.text.patterns import DEMOJIZED_IN_TEXT, MENTION_IN_TEXT, URL_IN_TEXT

PERCENTILES = (50, 90, 95, 99, 99.9, 100)


def length_summary(lengths: list[int]) -> dict:
    lengths = sorted(lengths)
    return {
        "mean": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
        **{f"p{q:g}": percentile(lengths, q) for q in PERCENTILES},
    }


class CorpusStats:
    """Accumulates counts; memory is one small int per tweet for the length percentiles."""

    def __init__(self, field: str, tokenizer=None):
        from emoji import emoji_count

        self.field, self.tokenizer, self._emoji_count = field, tokenizer, emoji_count
        self.count = 0
        self.word_lengths: list[int] = []
        self.subword_lengths: list[int] = []
        self.languages: Counter = Counter()
        self.with_mention = self.with_url = self.with_emoji = 0
        self._pending: list[str] = []

    def add(self, record: dict) -> None:
        text = record[self.field]
        self.count += 1
        self.word_lengths.append(len(text.split()))
        if "lang" in record:
            self.languages[str(record["lang"])] += 1
        self.with_mention += MENTION_IN_TEXT.search(text) is not None
        self.with_url += URL_IN_TEXT.search(text) is not None
        self.with_emoji += DEMOJIZED_IN_TEXT.search(text) is not None or self._emoji_count(text) > 0
        if self.tokenizer is not None:
            self._pending.append(text)
            if len(self._pending) >= 1000:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            # With special tokens: this is the length a model's max_length must cover.
            encoded = self.tokenizer(self._pending, add_special_tokens=True)["input_ids"]
            self.subword_lengths.extend(len(ids) for ids in encoded)
            self._pending = []

    def result(self) -> dict:
        self._flush()
        share = (lambda n: round(n / self.count, 4)) if self.count else (lambda n: 0.0)
        out = {
            "tweets": self.count,
            "word_tokens": length_summary(self.word_lengths),
            "share_with_mention": share(self.with_mention),
            "share_with_url": share(self.with_url),
            "share_with_emoji": share(self.with_emoji),
        }
        lengths = self.word_lengths
        if self.tokenizer is not None:
            out["subword_tokens"] = length_summary(self.subword_lengths)
            lengths = self.subword_lengths
        # BERT for Japanese Twitter chose its max sequence length this way.
        out["max_length_for_99.9%"] = percentile(sorted(lengths), 99.9)
        out["max_length_unit"] = "subword tokens incl. special" if self.tokenizer is not None else "word tokens"
        if self.languages:
            out["languages"] = dict(self.languages.most_common())
        return out


def print_table(stats: dict) -> None:
    from rich.table import Table

    from tweetkit.reports import stderr_console

    table = Table(title=f"{stats['tweets']:,} tweets", show_header=True)
    table.add_column("length")
    for q in ("mean", *[f"p{q:g}" for q in PERCENTILES]):
        table.add_column(q, justify="right")
    for name in ("word_tokens", "subword_tokens"):
        if name in stats:
            table.add_row(name.replace("_", " "), *[str(v) for v in stats[name].values()])
    console = stderr_console()
    console.print(table)
    console.print(
        f"max length covering 99.9%: {stats['max_length_for_99.9%']} {stats['max_length_unit']}; "
        f"with mention {stats['share_with_mention']:.1%}, URL {stats['share_with_url']:.1%}, "
        f"emoji {stats['share_with_emoji']:.1%}"
    )
    if "languages" in stats:
        top = ", ".join(f"{lang} {n:,}" for lang, n in list(stats["languages"].items())[:10])
        console.print(f"languages: {top}")


@click.command(
    "stats",
    epilog="""\b
Examples:
  tweetkit stats corpus.jsonl
  tweetkit stats --tokenizer tok/ corpus.jsonl | jq '."max_length_for_99.9%"'""",
)
@data_options(output_help="Write the JSON summary here (.gz compresses).")
@click.option(
    "--tokenizer",
    type=click.Path(exists=True, file_okay=False),
    help="A tokenizer directory: also count subword tokens.",
)
def command(stream, tokenizer):
    """Corpus statistics: counts, length percentiles, the max length covering 99.9%,
    languages (if records have `lang`) and the share of mentions, URLs and emoji."""
    from tweetkit.io import consume_records, open_output

    loaded = None
    if tokenizer:
        from tweetkit.modeling import load_tokenizer

        loaded = load_tokenizer(tokenizer)
    stats = CorpusStats(stream.field, loaded)
    for record in consume_records("stats", stream, text_field=stream.field):
        stats.add(record)
    result = stats.result()
    out = open_output(stream.output)
    out.write(json.dumps(result, ensure_ascii=False).encode("utf-8") + b"\n")
    if out is not sys.stdout.buffer:
        out.close()
    if not stream.quiet:
        print_table(result)
