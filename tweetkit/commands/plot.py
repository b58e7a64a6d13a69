"""tweetkit plot: loss curves from the metrics JSONL that pretrain and finetune print."""

from __future__ import annotations

import os

import click

from tweetkit.options import ON_ERROR


def read_curves(
    path: str, keys: list[str], label: str, on_error: str = "fail"
) -> list[tuple[str, list[tuple[float, float]]]]:
    """One series per key found in the file: [(f"{label} {key}", [(step, value), ...])].
    Read like any JSONL input (gzip, '-' for stdin, --on-error)."""
    from tweetkit.io import StreamOptions, consume_records

    series: dict[str, list[tuple[float, float]]] = {key: [] for key in keys}
    for record in consume_records("plot", StreamOptions(inputs=[path], on_error=on_error, quiet=True), text_field=None):
        if not isinstance(record.get("step"), (int, float)):
            continue  # summaries ({"best": ...}, {"seeds": ...}) carry no step
        for key in keys:
            if isinstance(record.get(key), (int, float)):
                series[key].append((float(record["step"]), float(record[key])))
    return [(f"{label} {key}".strip(), points) for key, points in series.items() if points]


@click.command(
    "plot",
    epilog="""\b
Examples:
  tweetkit pretrain ... > mlm.metrics.jsonl; tweetkit plot mlm.metrics.jsonl -o loss.svg
  tweetkit plot a.jsonl b.jsonl --label scratch --label continued --keys loss,validation_loss -o loss.svg""",
)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="SVG file to write.")
@click.option(
    "--keys",
    default="loss,validation_loss",
    show_default=True,
    help="Comma-separated metrics to draw against the step.",
)
@click.option("--label", "labels", multiple=True, help="Legend name per input, in order [default: the file name].")
@click.option("--title", default="", help="Chart title.")
@ON_ERROR
def command(inputs, output, keys, labels, title, on_error):
    """Draw metrics JSONL (training and validation loss by default) as an SVG line chart."""
    from tweetkit.errors import ConfigError
    from tweetkit.plotting import line_chart

    if labels and len(labels) != len(inputs):
        raise click.BadParameter(f"{len(labels)} labels for {len(inputs)} inputs", param_hint="--label")
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    series = []
    for number, path in enumerate(inputs):
        name = labels[number] if labels else os.path.basename(path).removesuffix(".jsonl").removesuffix(".metrics")
        series += read_curves(path, wanted, name if len(inputs) > 1 or labels else "", on_error)
    if not series:
        raise ConfigError(f"no records with 'step' and any of {', '.join(wanted)} in {', '.join(inputs)}")
    svg = line_chart(series, title=title, y_label=wanted[0] if len(wanted) == 1 else "value")
    partial = output + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(svg)
    os.replace(partial, output)
