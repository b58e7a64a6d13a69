"""tweetkit plot: loss curves from the metrics JSONL that pretrain and finetune print, and t-SNE maps of
sentence embeddings (`embed` outputs)."""

from __future__ import annotations

import os

import click

from tweetkit.options import ON_ERROR, output_option
from tweetkit.records import emit_json


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


def read_embeddings(path: str, embedding_field: str, label_field: str, on_error: str) -> list[tuple]:
    """(vector, label) per record of an `embed` output."""
    import math

    from tweetkit.io import StreamOptions, consume_records

    def check(record: dict) -> None:
        vector, label = record.get(embedding_field), record.get(label_field)
        if (
            not isinstance(vector, list)
            or not vector
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vector)
        ):
            raise ValueError(f"field '{embedding_field}' is not a list of numbers (run tweetkit embed first)")
        if not isinstance(label, (str, int)) or isinstance(label, bool):
            raise ValueError(f"field '{label_field}' is not a string or an integer")

    options = StreamOptions(inputs=[path], on_error=on_error, quiet=True)
    return [(r[embedding_field], str(r[label_field])) for r in consume_records("plot", options, None, validate=check)]


def plot_embeddings(inputs, names, output, settings: dict, title: str, on_error: str) -> None:
    """One t-SNE panel per input (the same sampled records in each), coloured by label, PNG
    and SVG; per panel a JSON line on stdout with the labels' silhouette in the embedding
    space (cosine), a number to compare beside the picture."""

    from sklearn.metrics import silhouette_score

    from tweetkit.errors import ConfigError
    from tweetkit.plotting import embedding_panels, sample_positions, tsne_2d

    read = [read_embeddings(p, settings["embedding_field"], settings["label_field"], on_error) for p in inputs]
    if any(len(records) != len(read[0]) for records in read) or not read[0]:
        raise ConfigError(
            f"--embeddings: the inputs hold {', '.join(str(len(r)) for r in read)} records; "
            "embed the same file with each model"
        )
    positions = sample_positions(len(read[0]), settings["max_points"], settings["seed"])
    labels = [read[0][i][1] for i in positions]
    panels = []
    for name, records, path in zip(names, read, inputs):
        if [records[i][1] for i in positions] != labels:
            raise ConfigError(
                f"--embeddings: {path} has other labels than {inputs[0]}; embed the same file with each model"
            )
        vectors = [records[i][0] for i in positions]
        points = tsne_2d(vectors, settings["seed"], settings["perplexity"])
        panels.append((name, points, labels))
        silhouette = silhouette_score(vectors, labels, metric="cosine") if 1 < len(set(labels)) < len(labels) else None
        emit_json({"panel": name, "input": path, "points": len(positions), "labels": len(set(labels)),
                   "silhouette_cosine": None if silhouette is None else round(float(silhouette), 6)})  # fmt: skip
    stem = output[: -len(".png")] if output.endswith((".png", ".svg")) else output
    embedding_panels(panels, stem, title)


@click.command(
    "plot",
    epilog="""\b
Examples:
  tweetkit pretrain ... > mlm.metrics.jsonl; tweetkit plot mlm.metrics.jsonl -o loss.svg
  tweetkit plot a.jsonl b.jsonl --label scratch --label continued --keys loss,validation_loss -o loss.svg
  tweetkit embed --model base/ test.jsonl > b.jsonl; tweetkit embed --model adapted/ test.jsonl > a.jsonl
  tweetkit plot --embeddings b.jsonl a.jsonl --label before --label after -o tsne.png   # + tsne.svg""",
)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@output_option("SVG file to write; with --embeddings, FILE.png and FILE.svg are both written.", directory=False)
@click.option(
    "--embeddings",
    is_flag=True,
    help="Inputs are `tweetkit embed` outputs of the same labelled file: one t-SNE panel per input, coloured by label.",
)
@click.option("--label-field", default="label", show_default=True, help="With --embeddings: the colour of a point.")
@click.option("--embedding-field", default="embedding", show_default=True, help="With --embeddings: the vector.")
@click.option(
    "--max-points",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="With --embeddings: a sample of this many records (the same in every panel, chosen by --seed); 0: all.",
)
@click.option("--perplexity", type=click.FloatRange(min=1), default=30.0, show_default=True, help="t-SNE perplexity.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --embeddings: the sample and t-SNE's state.")
@click.option(
    "--keys",
    default="loss,validation_loss",
    show_default=True,
    help="Comma-separated metrics to draw against the step.",
)
@click.option("--label", "labels", multiple=True, help="Legend name per input, in order [default: the file name].")
@click.option("--title", default="", help="Chart title.")
@ON_ERROR
def command(
    inputs,
    output,
    embeddings,
    label_field,
    embedding_field,
    max_points,
    perplexity,
    seed,
    keys,
    labels,
    title,
    on_error,
):
    """Draw metrics JSONL (training and validation loss by default) as an SVG line chart, or
    with --embeddings sentence embeddings as t-SNE maps (PNG and SVG)."""
    from tweetkit.errors import ConfigError
    from tweetkit.plotting import line_chart

    if labels and len(labels) != len(inputs):
        raise click.BadParameter(f"{len(labels)} labels for {len(inputs)} inputs", param_hint="--label")
    if embeddings:
        names = list(labels) or [os.path.basename(p).removesuffix(".jsonl") for p in inputs]
        settings = dict(label_field=label_field, embedding_field=embedding_field, max_points=max_points, seed=seed,
                        perplexity=perplexity)  # fmt: skip
        plot_embeddings(inputs, names, output, settings, title, on_error)
        return
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
