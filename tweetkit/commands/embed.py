"""tweetkit embed: sentence embeddings (masked mean of the last hidden states), JSONL in and out."""

from __future__ import annotations

import click

from tweetkit.options import data_options, device_option, threads_option


@click.command(
    "embed",
    epilog="""\b
Examples:
  tweetkit embed --model path/to/minilm test.jsonl > before.jsonl
  tweetkit embed --model minilm-tweets/ test.jsonl > after.jsonl
  tweetkit plot --embeddings before.jsonl after.jsonl --label before --label after -o tsne.png""",
)
@threads_option
@click.option("--model", "model_path", required=True, help="Any HF model directory or name: its encoder is used.")
@data_options()
@click.option("--output-field", default="embedding", show_default=True, help="Field the vector is written to.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--digits", type=click.IntRange(1, 9), default=6, show_default=True, help="Decimals kept per value.")
@device_option
def command(model_path, stream, output_field, batch_size, digits, device):
    """Add each tweet's sentence embedding: the mean of the model's last hidden states over
    its tokens (padding masked out), as sentence-transformers pools MiniLM.  Input order
    and every other field are kept; `plot --embeddings` draws the result."""
    from tweetkit.embeddings import EmbedStep
    from tweetkit.io import run_stream

    step = EmbedStep(model_path, stream.field, output_field, batch_size, device, digits)  # a bad path fails first
    run_stream("embed", stream, lambda: step, text_field=stream.field)
