"""tweetkit predict: streaming inference with a fine-tuned model, JSONL in and out."""

from __future__ import annotations

import functools

import click

from tweetkit.options import PRECISION, RUNTIME, data_options, device_option, threads_option
from tweetkit.reports import log_for

# Lines batched by length together: a wider window gives fuller batches (classifiers: of one
# length; taggers: less padding), for a little memory and a later first output line.
SORT_WINDOW = 4096


class PredictStep:
    """The transform: one call per input batch (a window of lines), batched by length inside."""

    def __init__(self, loaded, field: str, batch_size: int, threshold: float, log=None):
        self.loaded, self.field, self.batch_size, self.threshold = loaded, field, batch_size, threshold
        self.log = log  # where int8's agreement with fp32 goes, measured on the first call; None: not measured

    def __call__(self, records: list[dict]) -> list[dict]:
        from tweetkit import kinds
        from tweetkit.modeling import int8_agreement, predict

        inputs = [r[self.field] for r in records]
        outputs = predict(self.loaded, inputs, self.batch_size, self.threshold)
        if self.log is not None:
            agreement = int8_agreement(self.loaded, inputs, outputs, self.batch_size, self.threshold)
            if agreement:
                self.log(agreement)
            self.log = None
        pred_field = kinds.get(self.loaded.kind).pred_field
        for record, output in zip(records, outputs):
            if self.loaded.kind == "tagging":
                record[pred_field] = output
            else:
                record[pred_field], scores = output
                if scores is not None:
                    record["scores"] = scores
        return records


@click.command(
    "predict",
    epilog=(
        "\b\n"
        "Examples:\n"
        "  tweetkit normalize < new.jsonl | tweetkit predict --model sent/ > predicted.jsonl\n"
        "  tweetkit predict --model sent/ --precision int8 --threads 1 new.jsonl > predicted.jsonl   # a cron job\n"
        "  tweetkit predict --model sent/ --runtime onnx new.jsonl > predicted.jsonl   "
        "# ONNX Runtime (pip install 'tweetkit[onnx]')\n"
        "  tweetkit predict --model ner/ wnut17/test.jsonl | tweetkit evaluate      # a tagger reads the tokens field"
    ),
)
@threads_option
@click.option("--model", "model_path", required=True, help="A fine-tuned model directory (finetune output).")
@data_options(
    field_help="Field holding the text; for a tagging model, the list of words, by default tokens (as evaluate)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@device_option
@click.option(
    "--sort-window",
    type=click.IntRange(min=1),
    default=SORT_WINDOW,
    show_default=True,
    help="Lines batched by token length together (classifiers: each batch one length, no padding; taggers: sorted "
    "by words): more means fuller batches (faster), more memory and a later first output line.",
)
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Multi-label decision threshold.")
@PRECISION
@RUNTIME
def command(model_path, stream, batch_size, sort_window, device, threshold, precision, runtime):
    """Add predictions to each record: `pred` and `scores` (probabilities), or
    `pred_tags` for tagging models.  Input order is kept."""
    from tweetkit import kinds
    from tweetkit.io import run_stream
    from tweetkit.modeling import bf16_warning, load_for_inference, resolve_device

    log = log_for("predict", stream.quiet)
    loaded = load_for_inference(
        model_path, device, precision, runtime, log
    )  # before reading input: a bad path fails fast
    warning = bf16_warning(precision, resolve_device(device)) if precision == "bf16" else None  # no torch else
    if warning:
        log(warning)
    task = kinds.get(loaded.kind)
    if click.get_current_context().get_parameter_source("field") == click.core.ParameterSource.DEFAULT:
        stream.field = task.input_field  # a tagger reads words, where evaluate looks for them too
    field_type = list if task.input_field == "tokens" else str
    make_step = functools.partial(
        PredictStep, loaded, stream.field, batch_size, threshold, None if stream.quiet else log
    )
    run_stream("predict", stream, make_step, text_field=stream.field, field_type=field_type, batch_lines=sort_window)
