"""Models and tokenizers: the one place that resolves the device, decides what a model
directory holds, loads and saves models and tokenizers, and builds model shapes.

Nothing here runs code from a model directory: HF models load from safetensors with
`trust_remote_code` off, and the linear baselines from JSON and safetensors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from tweetkit.errors import ConfigError, log_to_stderr

# A name the Hugging Face hub could serve ("roberta-base", "vinai/bertweet-base");
# anything else that does not exist locally is a mistyped path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

# RoBERTa shapes; 130 positions = 128 tokens + RoBERTa's padding offset of 2 (as BERTweet).
MODEL_CONFIGS = {
    "tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


def quiet_transformers() -> None:
    """Keep transformers' load reports and progress bars off stderr (tweetkit logs what matters)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def resolve_device(name: str = "auto"):
    """auto: the GPU when there is one; cuda without one is a clear error.  (The CPU thread
    count is chosen apart, by tweetkit.threads.configure_torch.)"""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available to this torch build (use --device cpu or auto)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


# --- precision ---------------------------------------------------------------------------

INFERENCE_PRECISIONS = ("fp32", "bf16", "int8")
# What runs predict and evaluate: torch, or ONNX Runtime on the CPU (tweetkit.onnx_runtime, fp32 and int8).
RUNTIMES = ("torch", "onnx")
# The first encoder layers that int8 under ONNX Runtime leaves in fp32: quantizing them moves the
# logits most (bench/int8_layers.py, where leaving the first three of MiniLM-L6's six in fp32 was
# what brought label agreement with fp32 to 99%).  torch's int8 (quantize_int8) quantizes every
# layer: there the fp32 layers cost its whole speed-up, so it stays the fastest, least faithful mode.
INT8_FP32_LAYERS = 3
# Inputs on which predict and evaluate compare int8's labels with fp32's (int8_agreement):
# enough to show a few percent of changed labels, at a small part of a run's time.
AGREEMENT_SAMPLE = 512


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); without it
    oneDNN emulates bf16 and autocast runs slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return True  # not Linux: no way to tell, no warning
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_warning(precision: str, device) -> str | None:
    """The warning to log when bf16 is asked for where it can only be emulated."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return "warning: this CPU has no native bf16 (avx512_bf16/amx_bf16): bf16 will run slower than fp32 here"
    if precision == "bf16" and device.type == "cuda":
        import torch

        if not torch.cuda.is_bf16_supported(including_emulation=False):
            return (
                f"warning: {torch.cuda.get_device_name(device)} has no native bf16 (before Ampere): "
                "bf16 is emulated, use fp16"
            )
    return None


def precision_context(precision: str, device):
    """What forward passes run under: autocast for bf16 and fp16 (on the CPU or a GPU),
    nothing for fp32, nor for int8, whose quantized Linear layers compute in int8 themselves."""
    import contextlib

    import torch

    if precision not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def check_precision(precision: str, device) -> None:
    """Refuse a precision the device cannot run, before any model is loaded."""
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(
            "--precision int8 runs on the CPU only (dynamic quantization); "
            "use --device cpu, or --precision bf16 on a GPU"
        )


def quantize_int8(model, device):
    """Dynamic int8 quantization of the encoder's nn.Linear layers (weights int8 with a
    scale per output channel, activations quantized per batch): the matmuls, most of the
    time of a forward on the CPU.  Embeddings, LayerNorm, attention scores and the task
    head (pooler, classifier: tiny, and where an error moves the labels directly) stay
    fp32.  Per-channel weight scales agree with fp32 on more labels than one scale per
    matrix, at no cost in speed (bench/int8_layers.py measures both)."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    check_precision("int8", device)
    encoder = getattr(model.base_model, "encoder", None)
    if encoder is None:  # an architecture that names its layers otherwise: all of the base model
        encoder = model.base_model
    with warnings.catch_warnings():
        # torch.ao's eager quantization is deprecated in favour of torchao, which tweetkit does not depend on.
        warnings.simplefilter("ignore")
        quantize_dynamic(encoder, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return model


def int8_layer_quantized(index: int) -> bool:
    """Whether int8 under ONNX Runtime quantizes encoder layer `index` (0 the first): all but
    the first INT8_FP32_LAYERS."""
    return index >= INT8_FP32_LAYERS


def check_runtime(runtime: str, precision: str, device: str) -> None:
    """Refuse a runtime that cannot run this precision or device, before any model is loaded."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime {runtime}: not one of {', '.join(RUNTIMES)}")
    if runtime == "onnx":
        from tweetkit import onnx_runtime

        onnx_runtime.require()
        if precision not in ("fp32", "int8"):
            raise ConfigError(f"--runtime onnx runs fp32 or int8, not {precision} (--runtime torch runs {precision})")
        if device == "cuda":
            raise ConfigError("--runtime onnx runs on the CPU; use --device cpu (or auto), or --runtime torch on a GPU")


def check_source(name_or_path: str, what: str) -> None:
    """A missing local path is named as such, not passed on to the hub's repo-id checks."""
    if not os.path.exists(name_or_path) and not _HUB_ID.match(name_or_path):
        raise ConfigError(f"cannot load {what} {name_or_path}: no such directory")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """The whole message on one line: HF's first lines often end with a colon."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_model(path: str) -> str:
    """What a directory holds, in words for an error: 'a tagger with 13 labels', 'a linear
    classifier with 3 labels', 'a masked language model', 'not a model (no config.json)'."""
    import json

    from tweetkit import kinds, linear

    if not os.path.isdir(path):
        return "no such directory"
    try:
        if os.path.exists(os.path.join(path, linear.MODEL_INFO)):
            with open(os.path.join(path, linear.MODEL_INFO), encoding="utf-8") as handle:
                info = json.load(handle)
            kind = kinds.KINDS.get(info.get("task"))
            return "a linear " + (kind.describe(len(info.get("labels") or []))[2:] if kind else "model")
        with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        return "not a model (no config.json)"
    except (OSError, ValueError, AttributeError) as exc:
        return f"an unreadable model ({_one_line(exc, 80)})"
    architecture = (config.get("architectures") or ["no architecture"])[0]
    kind = kinds.of_architecture(architecture, config.get("problem_type"))
    if kind is not None:
        return kind.describe(len(config.get("id2label") or {}))
    if architecture.endswith("ForMaskedLM"):
        return "a masked language model"
    return f"a {config.get('model_type', 'transformers')} model ({architecture})"


def check_encoder(path: str) -> None:
    """Before finetune reads any data: --model must be a transformer (a local directory or a
    hub name), not a missing path, a linear model or a directory without a model."""
    check_source(path, "model")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json")):
        what = describe_model(path)
        hint = " (--model linear trains a new linear one)" if what.startswith("a linear") else ""
        raise ConfigError(f"--model {path}: {what}, not a transformer to fine-tune{hint}")


# Any of these marks a directory that holds a tokenizer (fast, or slow to convert).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "spiece.model")


def load_tokenizer(name_or_path: str, tagging: bool = False):
    """A fast (Rust) HF tokenizer; `tagging`: one that accepts pre-split words (RoBERTa's
    byte-level BPE needs add_prefix_space for them)."""
    from transformers import AutoTokenizer

    check_source(name_or_path, "tokenizer")
    if os.path.isdir(name_or_path) and not any(os.path.exists(os.path.join(name_or_path, f)) for f in TOKENIZER_FILES):
        raise ConfigError(f"cannot load tokenizer {name_or_path}: {describe_model(name_or_path)}, with no tokenizer")
    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)
        if tagging and getattr(tokenizer, "add_prefix_space", None) is False:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, add_prefix_space=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        where = f" ({describe_model(name_or_path)})" if os.path.isdir(name_or_path) else ""
        raise ConfigError(f"cannot load tokenizer {name_or_path}{where}: {_one_line(exc)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{name_or_path}: no fast tokenizer (tokenizer.json) available")
    return tokenizer


def load_pretrained(loader, name_or_path: str, **kwargs):
    """`loader.from_pretrained` (an AutoModel* class) with one-line errors and no remote code."""
    check_source(name_or_path, "model")
    quiet_transformers()
    try:
        return loader.from_pretrained(name_or_path, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        reason = _one_line(exc)
        if "ignore_mismatched_sizes" in reason:  # HF's report of which shapes differ went to the silenced log
            reason = f"its head does not fit this data's {kwargs.get('num_labels', '')} labels"
        where = f" ({describe_model(name_or_path)})" if os.path.isdir(name_or_path) else ""
        raise ConfigError(f"cannot load model {name_or_path}{where}: {reason}") from None


def model_type(directory: str) -> str:
    """'hf' or 'linear': what a fine-tuned model directory holds, decided here only.

    A directory with both markers is refused rather than guessed: otherwise two files
    dropped into an HF model directory would decide how it loads."""
    from tweetkit import linear

    if not os.path.isdir(directory):
        raise ConfigError(f"cannot load model {directory}: no such directory")
    has_hf = os.path.exists(os.path.join(directory, "config.json"))
    has_linear = os.path.exists(os.path.join(directory, linear.MODEL_INFO))
    if has_hf and has_linear:
        raise ConfigError(
            f"{directory}: holds both an HF model (config.json) and a linear one ({linear.MODEL_INFO}); remove one"
        )
    pickled = os.path.exists(os.path.join(directory, linear.PICKLED)) and not os.path.exists(
        os.path.join(directory, linear.WEIGHTS)
    )
    if has_linear and not pickled:
        return "linear"
    if has_hf:
        return "hf"
    if pickled:
        raise ConfigError(
            f"{directory}: a pickled linear model ({linear.PICKLED}) from an older tweetkit; "
            "unpickling can run code, so it is "
            "not loaded: train it again with finetune --model linear"
        )
    raise ConfigError(f"{directory}: not a model directory (no config.json or {linear.MODEL_INFO})")


# --- fine-tuned models for inference -------------------------------------------------------


@dataclass
class LoadedModel:
    kind: str  # classification | multilabel | regression | tagging
    labels: list[str] | None
    model: object = None  # an HF model, or the scikit-learn pipeline of the linear baseline
    tokenizer: object = None
    max_length: int = 128
    precision: str = "fp32"  # fp32 | bf16 (autocast) | int8 (quantized Linear layers, CPU)
    runtime: str = "torch"  # torch | onnx (model: an onnx_runtime.OnnxModel, tokenizer: a tokenizers.Tokenizer)
    path: str = ""  # the model directory: int8_agreement loads its fp32 model from here

    @property
    def is_linear(self) -> bool:
        return self.tokenizer is None


def load_for_inference(
    path: str, device: str = "auto", precision: str = "fp32", runtime: str = "torch", log=log_to_stderr
) -> LoadedModel:
    """A finetune output (HF or linear), ready to predict at `precision` (INFERENCE_PRECISIONS)
    on `runtime` (RUNTIMES; ONNX Runtime exports the graph on first use and says so on `log`)."""
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(f"--precision {precision}: not one of {', '.join(INFERENCE_PRECISIONS)}")
    if model_type(path) == "linear":
        from tweetkit import linear

        if precision != "fp32":
            raise ConfigError(f"--precision {precision}: {path} is a linear model, which has one precision (fp32)")
        if runtime != "torch":
            raise ConfigError(f"--runtime {runtime}: {path} is a linear model, which scikit-learn runs")
        info, pipeline = linear.load(path)
        return LoadedModel(info["task"], info["labels"], pipeline, path=path)
    check_runtime(runtime, precision, device)
    if runtime == "onnx":
        return load_for_onnx(path, precision, log)
    from transformers import AutoConfig

    from tweetkit.threads import configure_torch

    configure_torch()
    # int8 is a CPU mode: with --device auto it picks the CPU even where a GPU is (a cron job's default)
    target = resolve_device("cpu" if precision == "int8" and device == "auto" else device)
    check_precision(precision, target)  # before anything is read
    config = load_pretrained(AutoConfig, path)
    task = fine_tuned_kind(path, config.architectures, config.problem_type)
    model = load_pretrained(task.head(), path, config=config)  # the config read above, not read again
    model.to(target).eval()
    if precision == "int8":
        model = quantize_int8(model, target)
    labels = None if task.label_names([]) is None else [config.id2label[i] for i in range(config.num_labels)]
    tokenizer = load_tokenizer(path, tagging=task.name == "tagging")
    max_length = getattr(config, "max_length_trained", 128)
    return LoadedModel(task.name, labels, model, tokenizer, max_length, precision, runtime, path)


def fine_tuned_kind(path: str, architectures, problem_type):
    """The kinds registry's entry for a fine-tuned classifier's or tagger's config; an error for any other model."""
    from tweetkit import kinds

    found = [kinds.of_architecture(a, problem_type) for a in architectures or []]
    task = next((kind for kind in found if kind is not None), None)
    if task is None:
        raise ConfigError(f"{path}: {describe_model(path)}, not a fine-tuned classifier or tagger")
    return task


def load_for_onnx(path: str, precision: str, log) -> LoadedModel:
    """load_for_inference on ONNX Runtime (the CPU): the config read as JSON and the tokenizer
    through `tokenizers`, so that a cached graph runs without importing torch or transformers."""
    import json

    from tweetkit import onnx_runtime

    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
        if not isinstance(config, dict):
            raise ValueError("config.json is not a JSON object")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {path} ({describe_model(path)}): {_one_line(exc)}") from None
    task = fine_tuned_kind(path, config.get("architectures"), config.get("problem_type"))
    model = onnx_runtime.load(path, task.name, precision, log)
    labels = None if task.label_names([]) is None else config_labels(config)
    max_length = config.get("max_length_trained", 128)
    tokenizer = onnx_runtime.load_tokenizer(path, task.name, max_length)
    return LoadedModel(task.name, labels, model, tokenizer, max_length, precision, "onnx", path)


def config_labels(config: dict) -> list[str]:
    """The label names of a config.json, in index order, as transformers' PretrainedConfig reads
    them: id2label's, else LABEL_0... for num_labels (2 by default)."""
    id2label = {int(index): name for index, name in (config.get("id2label") or {}).items()}
    count = len(id2label) if id2label else config.get("num_labels", 2)
    return [id2label.get(i, f"LABEL_{i}") for i in range(count)]


def load_masked_lm(path: str, device: str = "auto", precision: str = "fp32"):
    """(model, tokenizer, device): a masked LM with its own head, on the device at `precision`."""
    from transformers import AutoModelForMaskedLM

    from tweetkit.threads import configure_torch

    configure_torch()
    target = resolve_device(device)
    check_precision(precision, target)
    tokenizer = load_tokenizer(path)
    model, info = load_pretrained(AutoModelForMaskedLM, path, output_loading_info=True)
    if info.get("missing_keys"):
        # A model saved without its MLM head (a sentence encoder, a classifier) would be
        # scored with a random head: a meaningless number that changes from run to run.
        missing = sorted(info["missing_keys"])
        raise ConfigError(
            f"{path}: no masked-LM head to evaluate ({len(missing)} weights missing, e.g. {missing[0]}); "
            "pretrain it first"
        )
    model.to(target)
    if precision == "int8":
        model = quantize_int8(model, target)
    return model, tokenizer, target


def predict(loaded: LoadedModel, inputs: list, batch_size: int = 64, threshold: float = 0.5) -> list:
    """Per input: (pred, scores) for sequence tasks, or a tag list for tagging."""
    if loaded.is_linear:  # before any torch import: a linear model never needs it
        from tweetkit import linear

        return linear.predict(loaded.model, loaded.kind, inputs)
    if loaded.runtime == "onnx":  # numpy: no torch
        from tweetkit.inference import predict_sequences_onnx, predict_tags_onnx

        if loaded.kind == "tagging":
            return predict_tags_onnx(loaded.model, loaded.tokenizer, inputs, loaded.labels, batch_size)
        return predict_sequences_onnx(
            loaded.model, loaded.tokenizer, inputs, loaded.kind, loaded.labels, batch_size, threshold
        )
    from tweetkit.inference import predict_sequences, predict_tags

    device = next(loaded.model.parameters()).device
    with precision_context(loaded.precision, device):
        if loaded.kind == "tagging":
            return predict_tags(loaded.model, loaded.tokenizer, inputs, loaded.labels, batch_size, loaded.max_length)
        return predict_sequences(
            loaded.model, loaded.tokenizer, inputs, loaded.kind, loaded.labels, batch_size, loaded.max_length, threshold
        )


def int8_agreement(loaded: LoadedModel, inputs: list, outputs: list, batch_size: int = 64, threshold: float = 0.5):
    """What int8 changed: its outputs for the first AGREEMENT_SAMPLE inputs against those of the
    same model in fp32 on the same runtime, in words ('labels = fp32 on 98.05% of 512 tweets').
    None at other precisions."""
    if loaded.precision != "int8" or not inputs:
        return None
    count = min(len(inputs), AGREEMENT_SAMPLE)
    reference = load_for_inference(loaded.path, "cpu", "fp32", loaded.runtime, log=lambda message: None)
    expected = predict(reference, inputs[:count], batch_size, threshold)
    where = f"int8 on {loaded.runtime}"
    if loaded.kind == "regression":
        gap = sum(abs(a[0] - b[0]) for a, b in zip(outputs, expected)) / count
        return f"{where}: mean |prediction - fp32's| {gap:.4g} over the first {count:,} inputs"
    if loaded.kind == "tagging":
        pairs = [(a, b) for tags, reference_tags in zip(outputs, expected) for a, b in zip(tags, reference_tags)]
        what = f"{len(pairs):,} words of the first {count:,} inputs"
    else:
        pairs = [(a[0], b[0]) for a, b in zip(outputs, expected)]
        what = f"the first {count:,} inputs"
    share = sum(a == b for a, b in pairs) / max(1, len(pairs))
    return f"{where}: labels = fp32's on {share:.2%} of {what}"


# --- pretraining shapes ------------------------------------------------------------------


def build_model(name_or_path: str, tokenizer, seed: int):
    """A freshly initialised RobertaForMaskedLM of a named size or a config JSON."""
    import json

    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    if name_or_path in MODEL_CONFIGS:
        shape = dict(MODEL_CONFIGS[name_or_path], max_position_embeddings=130, type_vocab_size=1)
    else:
        try:
            with open(name_or_path, encoding="utf-8") as handle:
                shape = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--model-config {name_or_path}: {exc}") from None
    shape.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    try:
        return RobertaForMaskedLM(RobertaConfig(**shape, attn_implementation="sdpa"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--model-config {name_or_path}: {_first_line(exc)}") from None


def position_offset(model) -> int:
    # RoBERTa-family models number positions from padding_idx + 1; BERT from 0.
    return model.config.pad_token_id + 1 if model.config.model_type in ("roberta", "xlm-roberta", "camembert") else 0


# What save_model may write: save_pretrained's files of a model and of its tokenizer.
SAVED_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")
SAVED_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
)


def save_model(model, tokenizer, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    follow_umask(os.path.join(directory, "model.safetensors"))


def follow_umask(path: str) -> None:
    """safetensors writes through a private temporary file (mode 0600): give the model the
    mode every other output file has, so that others on a shared server can read it."""
    umask = os.umask(0)
    os.umask(umask)
    if os.path.exists(path):
        os.chmod(path, 0o666 & ~umask)
