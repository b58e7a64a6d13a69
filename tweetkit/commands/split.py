"""tweetkit split: deterministic, leakage-safe train/validation/test splits."""

from __future__ import annotations

import functools
import os

import click

from tweetkit.options import data_options


def parse_ratios(ctx, param, value: str) -> dict[str, float]:
    ratios = {}
    for part in value.split(","):
        name, sep, number = part.partition("=")
        try:
            ratios[name.strip()] = float(number)
        except ValueError:
            raise click.BadParameter(f"expected name=ratio, got {part!r}") from None
        if not sep or not name.strip() or ratios[name.strip()] < 0:
            raise click.BadParameter(f"expected name=ratio, got {part!r}")
    total = sum(ratios.values())
    if total <= 0:
        raise click.BadParameter("ratios must add up to more than 0")
    return {name: r / total for name, r in ratios.items()}


def split_paths(prefix: str, names) -> dict[str, str]:
    """PREFIX.NAME.jsonl, or PREFIX/NAME.jsonl when PREFIX is a directory."""
    if prefix.endswith(os.sep) or os.path.isdir(prefix):
        os.makedirs(prefix, exist_ok=True)
        return {name: os.path.join(prefix, f"{name}.jsonl") for name in names}
    if os.path.dirname(prefix):
        os.makedirs(os.path.dirname(prefix), exist_ok=True)  # `-o data/corpus` with no data/ yet
    return {name: f"{prefix}.{name}.jsonl" for name in names}


@click.command(
    "split",
    epilog="""\b
Examples:
  tweetkit split corpus.jsonl -o data/corpus          # data/corpus.{train,validation,test}.jsonl
  tweetkit split --ratios train=0.9,test=0.1 --seed 7 corpus.jsonl -o splits/
  tweetkit split --tag-only corpus.jsonl > tagged.jsonl  # adds "split" to each record""",
)
@data_options(
    output_help="Output PREFIX: PREFIX.NAME.jsonl per split, "
    "or DIR/NAME.jsonl when PREFIX is a directory (created as needed)."
)
@click.option(
    "--ratios",
    default="train=0.8,validation=0.1,test=0.1",
    show_default=True,
    callback=parse_ratios,
    help="Named shares (normalised to sum to 1).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Another seed gives another, equally stable, split."
)
@click.option(
    "--tag-only", is_flag=True, help="Add a 'split' field and write one stream instead of one file per split."
)
def command(stream, ratios, seed, tag_only):
    """Split a corpus so that duplicates never straddle splits.

    Each record goes to a split chosen by a hash of its dedup key (case, links,
    mentions, punctuation and emoji ignored) and --seed: the same and trivially
    varied tweets always land together, and the split of a tweet never depends on the
    rest of the corpus or its order.  -o names the output PREFIX.
    """
    from tweetkit.io import run_stream
    from tweetkit.text.steps import Split

    make_step = functools.partial(Split, stream.field, ratios, seed, tag_only)
    if tag_only:
        run_stream("split", stream, make_step, text_field=stream.field)
        return
    if stream.output == "-":
        raise click.UsageError("give an output prefix with -o PREFIX (or use --tag-only)")
    from tweetkit.io import refuse_overlap

    routes = split_paths(stream.output, ratios)
    refuse_overlap(stream.inputs, [*routes.values(), stream.rejects])
    run_stream("split", stream, make_step, text_field=stream.field, routes=routes)
