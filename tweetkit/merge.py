"""Weight interpolation (WiSE-FT, Wortsman et al. 2022): (1 - alpha) * start + alpha * adapted.

Adaptation that breaks what the start knew is often mended by walking back part of the way:
alpha = 0 is the start, 1 the adapted model.  Both directories are read as safetensors only
(no code runs); they must have the same shape and vocabulary.  A tensor of the start and
one of the adapted model are the same tensor when their names agree, or agree once the
head model's prefix is dropped (MiniLM saved as a bare BertModel has `embeddings.*`, the
adapted BertForMaskedLM `bert.embeddings.*`).  The merged model has the adapted model's
names, config and tokenizer; what only it has (the MLM head) is copied as it is.
"""

from __future__ import annotations

import json
import os
import shutil

from tweetkit.errors import ConfigError

SHAPE = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
WEIGHTS = "model.safetensors"


def read_model(directory: str) -> tuple[dict, dict]:
    """(config, tensors) of a model directory, from config.json and model.safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
        return config, load_file(os.path.join(directory, WEIGHTS))
    except FileNotFoundError as exc:
        missing = os.path.basename(exc.filename)
        raise ConfigError(f"{directory}: no {missing} (a model directory with safetensors weights)") from None
    except (OSError, ValueError, SafetensorError) as exc:
        raise ConfigError(f"{directory}: unreadable model ({type(exc).__name__}: {str(exc)[:120]})") from None


def check_compatible(start_dir: str, start: dict, adapted_dir: str, adapted: dict) -> None:
    """The same architecture and the same vocabulary, or a one-line refusal."""
    from tweetkit.modeling import load_tokenizer

    for key in SHAPE:
        if start.get(key) != adapted.get(key):
            raise ConfigError(
                f"--start {start_dir} and --adapted {adapted_dir} differ in {key} "
                f"({start.get(key)} vs {adapted.get(key)}): "
                "only models of one shape and vocabulary interpolate"
            )
    if load_tokenizer(start_dir).get_vocab() != load_tokenizer(adapted_dir).get_vocab():
        raise ConfigError(f"--start {start_dir} and --adapted {adapted_dir} have different vocabularies")


def counterparts(start: dict, adapted: dict) -> dict:
    """{adapted name: start name} for the tensors both models have."""
    pairs = {}
    for name in adapted:
        bare = name.split(".", 1)[1] if "." in name else name
        for candidate in (name, bare):
            if candidate in start:
                pairs[name] = candidate
                break
        else:
            prefixed = [n for n in start if "." in n and n.split(".", 1)[1] == name]
            if len(prefixed) == 1:
                pairs[name] = prefixed[0]
    return pairs


def interpolate(start: dict, adapted: dict, pairs: dict, alpha: float) -> dict:
    """The adapted model's tensors, each shared one replaced by the interpolation, computed in
    float64 and rounded once: alpha 0 and 1 give the start's and the adapted's exactly."""
    merged = {}
    for name, tensor in adapted.items():
        if name not in pairs or not tensor.is_floating_point():
            merged[name] = tensor
            continue
        other = start[pairs[name]]
        if other.shape != tensor.shape:
            raise ConfigError(f"{name}: shape {tuple(other.shape)} in --start, {tuple(tensor.shape)} in --adapted")
        mixed = (1 - alpha) * other.double() + alpha * tensor.double()
        merged[name] = mixed.to(tensor.dtype).contiguous()
    return merged


def targets(output: str, alphas: list[float]) -> list[str]:
    """Where each alpha's model goes: `output` for one alpha, output/alpha-A/ for several."""
    return [output] if len(alphas) == 1 else [os.path.join(output, f"alpha-{alpha:g}") for alpha in alphas]


def merge_models(start_dir: str, adapted_dir: str, alphas: list[float], output: str, log) -> list[dict]:
    """Write one merged model per alpha (into `output`, or output/alpha-A/ for several);
    a record per model."""
    from safetensors.torch import save_file

    from tweetkit.modeling import load_tokenizer

    start_config, start = read_model(start_dir)
    adapted_config, adapted = read_model(adapted_dir)
    check_compatible(start_dir, start_config, adapted_dir, adapted_config)
    pairs = counterparts(start, adapted)
    if not pairs:
        raise ConfigError(f"--start {start_dir} and --adapted {adapted_dir} share no tensor")
    unmatched = sorted(set(start) - set(pairs.values()))
    log(
        f"{len(pairs)} tensors interpolated; {len(adapted) - len(pairs)} only in --adapted, copied"
        + (f"; {len(unmatched)} only in --start, dropped ({', '.join(unmatched[:3])})" if unmatched else "")
    )
    tokenizer = load_tokenizer(adapted_dir)
    records = []
    for alpha, target in zip(alphas, targets(output, alphas)):
        os.makedirs(target, exist_ok=True)
        save_file(interpolate(start, adapted, pairs, alpha), os.path.join(target, WEIGHTS), metadata={"format": "pt"})
        shutil.copyfile(os.path.join(adapted_dir, "config.json"), os.path.join(target, "config.json"))
        tokenizer.save_pretrained(target)
        record = {
            "alpha": alpha,
            "output": target,
            "start": start_dir,
            "adapted": adapted_dir,
            "interpolated": len(pairs),
        }
        with open(os.path.join(target, "tweetkit_merge.json"), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)
        records.append(record)
        log(f"alpha {alpha:g}: {target}")
    return records


def parse_alphas(text: str) -> list[float]:
    """--alpha A or A,B,...: finite numbers, each once (0 is the start, 1 the adapted model)."""
    import math

    from tweetkit.errors import UsageError

    try:
        alphas = [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--alpha {text}: expected a number or a comma-separated list of numbers") from None
    if not all(math.isfinite(a) for a in alphas) or len(set(alphas)) != len(alphas):
        raise UsageError(f"--alpha {text}: expected distinct finite numbers")
    return alphas
