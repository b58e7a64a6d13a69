"""The flags commands share, defined once, and `--config FILE` for any command.

- `data_options`: the streaming I/O flags of the data commands (files or stdin, -o,
  --field, --on-error, --rejects, --progress, -q, --dropped, --workers, --ray).
- `train_options`: flags made from `TrainConfig`'s fields and their help; a command
  names the fields it exposes and may change their defaults.
- `config_options`: `--config FILE` (TOML, YAML or JSON keyed by the long flag names, or
  a saved tweetkit_train_config.json) merged under the flags given on the command line,
  and `--print-config` to show the result.
- `threads_option`: `--threads N` (or TWEETKIT_THREADS) of every command that runs torch,
  applied before the command imports it (tweetkit.threads).
- `field_option`, `output_option`, `ON_ERROR`, `QUIET`, `device_option`, `PRECISION`: the
  single flags that commands outside these groups share.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys

import click

FIELD_HELP = "JSON field holding the tweet text."


def field_option(help_text: str = FIELD_HELP, default: str | None = "text", name: str = "field"):
    """`--field`, the JSON field a command reads.  finetune and evaluate, which read label fields
    too, name it `text_field` and also accept the spelling --text-field."""
    names = ["--field"] if name == "field" else ["--field", "--text-field", name]
    return click.option(*names, default=default, show_default=default is not None, help=help_text)


FIELD = field_option()
ON_ERROR = click.option(
    "--on-error",
    type=click.Choice(["fail", "skip"]),
    default="fail",
    show_default=True,
    help="Bad lines (not JSON, not an object, no text field, bad UTF-8, bad label): "
    "stop with file:line, or count and skip them.",
)
QUIET = click.option("-q", "--quiet", is_flag=True, help="No progress, logs or summary on stderr.")
# Inference precision of predict and evaluate (training's --precision is a TrainConfig field).
PRECISION = click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "int8"]),
    default="fp32",
    show_default=True,
    help="fp32; bf16 autocast (fast on GPUs and CPUs with AVX512-BF16/AMX, emulated and slow elsewhere); int8: "
    "dynamic quantization of the Linear layers (CPU only).",
)

RUNTIME = click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx"]),
    default="torch",
    show_default=True,
    help="torch; onnx: ONNX Runtime on the CPU, fp32 or int8 (int8 keeps the first encoder layers fp32), the graph "
    "exported on first use and cached in MODEL/onnx-cache/ (pip install 'tweetkit[onnx]').",
)


def _label_map(ctx, param, value):
    """--label-map 'A=B,C=D' as a dict ({} when not given); bad syntax is a one-line usage error."""
    from tweetkit.errors import UsageError
    from tweetkit.metrics import parse_label_map

    if not value:
        return {}
    if isinstance(value, dict):  # from --config
        return {str(k): str(v) for k, v in value.items()}
    try:
        return parse_label_map(value)
    except ValueError as exc:
        raise UsageError(f"--label-map: {exc}") from None


def label_map_option(help_text: str):
    return click.option("--label-map", "label_map", callback=_label_map, metavar="FROM=TO,...", help=help_text)


def _apply(func, options):
    for option in reversed(options):
        func = option(func)
    return func


# --- data commands ---------------------------------------------------------------------


def _stream_flags(field_help: str, output_help: str, dropped: bool, workers: bool, output_shown: bool = True) -> list:
    options = [
        click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True)),
        click.option("-o", "--output", default="-", show_default="stdout" if output_shown else False, help=output_help),
        field_option(field_help),
        ON_ERROR,
        click.option(
            "--rejects",
            type=click.Path(),
            help="With --on-error skip: write bad lines here, byte for byte.",
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="Progress and summary on stderr [default: when stderr is a terminal].",
        ),
        QUIET,
    ]
    if dropped:
        options.append(
            click.option("--dropped", type=click.Path(), help="Write every dropped record here, with its 'reason'.")
        )
    if workers:
        options.append(
            click.option(
                "--workers",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help="Worker processes; output order is kept.  With -o DIR/: files processed at once.",
            )
        )
        options.append(
            click.option(
                "--ray",
                "ray_address",
                metavar="ADDRESS",
                help="With -o DIR/: run the per-file tasks on Ray ('auto': the running cluster, "
                "'local': a Ray instance of --workers CPUs here, or a cluster address).",
            )
        )
    return options


def _stream_options(kwargs: dict):
    from tweetkit.io import StreamOptions, refuse_overlap

    progress = kwargs.pop("progress")
    stream = StreamOptions(
        inputs=kwargs.pop("inputs"),
        output=kwargs.pop("output"),
        field=kwargs.pop("field"),
        on_error=kwargs.pop("on_error"),
        rejects=kwargs.pop("rejects"),
        dropped=kwargs.pop("dropped", None),
        progress=sys.stderr.isatty() if progress is None else progress,
        quiet=kwargs.pop("quiet"),
        workers=kwargs.pop("workers", 1),
        ray_address=kwargs.pop("ray_address", None),
    )
    if stream.rejects and stream.on_error != "skip":
        raise click.UsageError("--rejects needs --on-error skip")
    refuse_overlap(stream.inputs, [stream.output, stream.rejects, stream.dropped])
    return stream


def data_options(
    *,
    field_help: str = FIELD_HELP,
    output_help: str = "Write JSONL here (.gz compresses).",
    dropped: bool = False,
    workers: bool = False,
    output_shown: bool = True,
):
    """Decorator adding the streaming I/O flags; the command receives `stream: StreamOptions`.
    `output_shown`: whether -o's help shows its default (stdout), false where -o is required."""

    def decorate(func):
        def wrapper(**kwargs):
            return func(stream=_stream_options(kwargs), **kwargs)

        functools.update_wrapper(wrapper, func)  # keeps the command's own click params
        return _apply(wrapper, _stream_flags(field_help, output_help, dropped, workers, output_shown))

    return decorate


# --- training commands -----------------------------------------------------------------


def _parse_pair(ctx, param, value):
    if value is None or isinstance(value, tuple):
        return value
    try:
        first, second = (float(v) for v in str(value).split(","))
    except ValueError:
        raise click.BadParameter("expected two numbers, e.g. 0.9,0.98") from None
    return first, second


def _flag_for(spec: dataclasses.Field, default, help_text: str | None):
    """The click option of one TrainConfig field."""
    meta, name = spec.metadata, "--" + spec.name.replace("_", "-")
    kwargs = dict(default=default, help=help_text or meta["help"], show_default=True)
    if spec.type in ("bool", bool):
        return click.option(name, is_flag=True, default=bool(default), help=kwargs["help"])
    if "choices" in meta:
        kwargs["type"] = click.Choice(meta["choices"])
    elif spec.type in ("int", int):
        kwargs["type"] = click.IntRange(min=meta.get("min", 0)) if meta.get("min", 0) is not None else int
    elif spec.type in ("float", float):
        kwargs["type"] = click.FloatRange(min=0, min_open=True) if meta.get("min_open") else float
    else:  # the betas pair
        kwargs.update(callback=_parse_pair, default=",".join(map(str, default)))
    return click.option(name, **kwargs)


def train_options(names: list[str], defaults: dict | None = None, helps: dict | None = None):
    """Decorator adding the TrainConfig flags `names`; the command receives their values as
    `train: dict` (field name -> value), ready for TrainConfig(**train, ...)."""
    from tweetkit.train.config import TrainConfig

    fields = {spec.name: spec for spec in dataclasses.fields(TrainConfig)}
    defaults, helps = defaults or {}, helps or {}

    def decorate(func):
        def wrapper(**kwargs):
            return func(train={name: kwargs.pop(name) for name in names}, **kwargs)

        functools.update_wrapper(wrapper, func)
        options = [_flag_for(fields[n], defaults.get(n, fields[n].default), helps.get(n)) for n in names]
        return _apply(wrapper, options)

    return decorate


def output_option(help_text: str, directory: bool = True):
    """`-o/--output`, required: the directory (or, `directory` False, the file) a command writes."""
    kind = click.Path(file_okay=not directory, dir_okay=directory)
    return click.option("-o", "--output", required=True, type=kind, help=help_text)


def device_option(func):
    """`--device` of the inference commands: TrainConfig's own field, so that it reads as in
    pretrain and finetune."""
    from tweetkit.train.config import TrainConfig

    spec = next(spec for spec in dataclasses.fields(TrainConfig) if spec.name == "device")
    return _flag_for(spec, spec.default, None)(func)


# --- threads ---------------------------------------------------------------------------


def threads_option(func):
    """Decorator adding `--threads N`; the thread settings are applied (tweetkit.threads)
    before the command runs, hence before it imports torch.  Not part of the command's
    saved flags: a run's thread count belongs to the machine, like its load."""

    def wrapper(threads, shared, **kwargs):
        from tweetkit import threads as thread_settings

        thread_settings.apply(threads, shared)
        return func(**kwargs)

    functools.update_wrapper(wrapper, func)
    option = click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        help="CPU threads for torch [default: $TWEETKIT_THREADS, else $OMP_NUM_THREADS, else the physical cores "
        "available]. Jobs sharing cores: give each cores/jobs.",
    )
    shared = click.option(
        "--shared",
        is_flag=True,
        help="Other busy jobs share these cores: waiting threads sleep at once instead of spinning (also "
        "$TWEETKIT_SHARED=1; implied by fewer --threads than cores and by several torchrun processes here).",
    )
    return option(shared(wrapper))


# --- config files ----------------------------------------------------------------------


def read_config_file(path: str) -> dict:
    """Flags from a TOML, YAML or JSON file (keys as the flags, with - or _); a saved
    tweetkit_train_config.json gives back the flags of the run that wrote it."""
    from tweetkit.errors import ConfigError

    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        if path.endswith(".toml"):
            import tomllib

            data = tomllib.loads(raw.decode("utf-8"))
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise ConfigError(
                    f"--config {path}: YAML needs PyYAML (pip install pyyaml), or use TOML or JSON"
                ) from None
            data = yaml.safe_load(raw)
        else:
            data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a table of flags")
    data = data.get("flags", data)  # a saved tweetkit_train_config.json
    return {str(key).replace("-", "_"): value for key, value in data.items()}


# Flags that act on the output directory, not on what a run computes: given on the command
# line each time, never read from a file nor saved, so a replayed config cannot replace a run.
OUTPUT_ACTIONS = ("overwrite", "resume")


def config_key(param: click.Parameter) -> str:
    """A setting's key in config files and saved flags: its first long flag (train for --train)."""
    long_names = [opt[2:].replace("-", "_") for opt in param.opts if opt.startswith("--")]
    return long_names[0] if long_names else param.name


def config_keys(command: click.Command) -> dict[str, str]:
    """Config key -> parameter: every long flag name; also the parameter's own name, which
    files saved by earlier versions used (train_path, kind)."""
    params = [p for p in command.params if p.name not in ("config", "print_config")]
    keys = {opt[2:].replace("-", "_"): p.name for p in params for opt in p.opts if opt.startswith("--")}
    return {**{p.name: p.name for p in params}, **keys}


def _unknown_settings(path: str, unknown: list[str], command: click.Command) -> click.UsageError:
    import difflib

    valid = sorted({config_key(p) for p in command.params} - {"config", "print_config"})
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=1)
        named.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return click.UsageError(f"--config {path}: unknown settings {', '.join(named)}")


def _load_config(ctx: click.Context, param, path):
    """Eager: the file's values become the defaults of this invocation (click's
    default_map), so flags given on the command line win and required ones may come
    from the file."""
    if not path:
        return
    params, keys = {p.name: p for p in ctx.command.params}, config_keys(ctx.command)
    values = read_config_file(path)
    for key in OUTPUT_ACTIONS:
        if values.pop(key, False):
            print(f"tweetkit: --config {path}: {key} ignored: give --{key} on the command line", file=sys.stderr)
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise _unknown_settings(path, unknown, ctx.command)
    values = {keys[key]: value for key, value in values.items()}
    for name, value in values.items():
        if isinstance(value, list) and not getattr(params[name], "multiple", False) and params[name].nargs == 1:
            values[name] = ",".join(map(str, value))  # the betas pair, saved as a list
        elif isinstance(value, dict):  # a label map, saved as a table
            values[name] = ",".join(f"{k}={v}" for k, v in value.items())
    ctx.default_map = {**(ctx.default_map or {}), **values}


def resolved_flags(kwargs: dict, command: click.Command) -> dict:
    """The flags as JSON-able values under their config keys (what --print-config prints
    and outputs save), without those that act on the output directory."""
    keys = {p.name: config_key(p) for p in command.params}
    plain = {}
    for name, value in kwargs.items():
        if isinstance(value, tuple):
            value = list(value)
        if name not in OUTPUT_ACTIONS:
            plain[keys.get(name, name)] = value
    return plain


def config_options(func):
    """Decorator adding `--config FILE` and `--print-config`; the command receives the
    resolved flags also as `flags: dict`, to save beside its output."""

    def wrapper(print_config, **kwargs):
        flags = resolved_flags(kwargs, click.get_current_context().command)
        if print_config:
            sys.stdout.write(json.dumps(flags, indent=2, default=str) + "\n")
            click.get_current_context().exit(0)
        return func(flags=flags, **kwargs)

    functools.update_wrapper(wrapper, func)
    options = [
        click.option(
            "--config",
            type=click.Path(dir_okay=False),
            is_eager=True,
            expose_value=False,
            callback=_load_config,
            help="Flags from a TOML, YAML or JSON file, keyed by their long names (train, task, lr, batch-size, ...; "
            "examples/finetune.toml), or a saved tweetkit_train_config.json; flags given here win. --overwrite and "
            "--resume are never read from it.",
        ),
        click.option("--print-config", is_flag=True, help="Print the resolved flags as JSON and stop."),
    ]
    return _apply(wrapper, options)
