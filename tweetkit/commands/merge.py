"""tweetkit merge: weight interpolation between a starting model and its adaptation."""

from __future__ import annotations

import click

from tweetkit.options import QUIET, output_option
from tweetkit.records import emit_json
from tweetkit.reports import log_for


@click.command(
    "merge",
    epilog="""\b
Examples:
  tweetkit merge --start minilm/ --adapted minilm-tweets/ --alpha 0.5 -o minilm-half/
  tweetkit merge --start minilm/ --adapted minilm-tweets/ --alpha 0,0.25,0.5,0.75,1 -o merged/
      # merged/alpha-0/ ... merged/alpha-1/: choose alpha on validation""",
)
@click.option("--start", "start", required=True, type=click.Path(file_okay=False), help="The model before adaptation.")
@click.option("--adapted", required=True, type=click.Path(file_okay=False), help="The model after adaptation.")
@click.option(
    "--alpha",
    required=True,
    help="Weight of the adapted model: 0 is --start, 1 is --adapted; a comma-separated list writes DIR/alpha-A/ each.",
)
@output_option("Output directory.")
@click.option("--overwrite", is_flag=True, help="Replace a model already in the output directory.")
@QUIET
def command(start, adapted, alpha, output, overwrite, quiet):
    """Write (1 - alpha) * START + alpha * ADAPTED for every tensor the two models share.

    Safetensors in and out; the merged model has the adapted model's config and
    tokenizer (and its MLM head, which only it has).  Models of different shape or
    vocabulary are refused.  One JSON line per model written goes to stdout.
    """
    import os

    from tweetkit.errors import UsageError
    from tweetkit.merge import merge_models, parse_alphas, targets

    alphas = parse_alphas(alpha)
    for target in targets(output, alphas):
        if os.path.exists(os.path.join(target, "model.safetensors")) and not overwrite:
            raise UsageError(f"-o {target} holds a model: add --overwrite to replace it")
    for record in merge_models(start, adapted, alphas, output, log_for("merge", quiet)):
        emit_json(record)
