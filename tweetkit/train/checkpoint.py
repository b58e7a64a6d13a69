"""Checkpoints: atomic, data only, checked against the run that resumes them.

A checkpoint directory holds the model (model.safetensors, via save_pretrained), the
optimizer's tensors (optimizer.safetensors), everything else as JSON
(trainer_state.json) and the resolved config (tweetkit_train_config.json).  Nothing is
pickled, so resuming from a directory someone else wrote cannot run code.  It is
written under a temporary name and renamed into place: a crash leaves no half
checkpoint, and a corrupt one (a full disk, a copy cut short) is skipped for the
previous one on resume.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import torch

from tweetkit.errors import ConfigError

DIR = "checkpoint"  # OUTPUT/checkpoint-STEP
PATTERN = re.compile(rf"^{DIR}-(\d+)$")
STATE = "trainer_state.json"
OPTIMIZER = "optimizer.safetensors"
EXTRA = "extra.safetensors"  # tensors a caller keeps with the run (the best epoch's weights)
CONFIG = "tweetkit_train_config.json"


def _split_optimizer(state: dict) -> tuple[dict, dict]:
    """An optimizer state_dict as (tensors, JSON-plain rest)."""
    tensors, plain = {}, {"state": {}, "param_groups": state["param_groups"]}
    for index, values in state["state"].items():
        plain["state"][str(index)] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                plain["state"][str(index)][name] = value
    return tensors, plain


def _join_optimizer(tensors: dict, plain: dict) -> dict:
    state: dict = {int(index): dict(values) for index, values in plain["state"].items()}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in plain["param_groups"]]
    return {"state": state, "param_groups": groups}


def save(
    output_dir: str, step: int, model, optimizer, scaler, state: dict, config: dict, extra: dict | None = None
) -> str:
    """Write checkpoint-STEP atomically (rank 0 only)."""
    from safetensors.torch import save_file

    final = os.path.join(output_dir, f"{DIR}-{step}")
    partial = final + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    model.save_pretrained(partial, safe_serialization=True)
    tensors, plain = _split_optimizer(optimizer.state_dict())
    save_file(tensors, os.path.join(partial, OPTIMIZER))
    if extra:
        save_file({k: v.detach().contiguous().cpu() for k, v in extra.items()}, os.path.join(partial, EXTRA))
    _write_json(os.path.join(partial, STATE), {**state, "optimizer": plain, "scaler": scaler.state_dict()})
    _write_json(os.path.join(partial, CONFIG), config)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(partial, final)
    return final


def _write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def steps(output_dir: str) -> list[int]:
    """The steps of the checkpoints in output_dir, newest first."""
    if not os.path.isdir(output_dir):
        return []
    return sorted((int(m.group(1)) for name in os.listdir(output_dir) if (m := PATTERN.match(name))), reverse=True)


def prune(output_dir: str, keep: int) -> None:
    """Remove all but the `keep` newest checkpoints (keep 0: remove none)."""
    if keep > 0:
        for step in steps(output_dir)[keep:]:
            shutil.rmtree(os.path.join(output_dir, f"{DIR}-{step}"), ignore_errors=True)


def remove_all(output_dir: str) -> None:
    for step in steps(output_dir):
        shutil.rmtree(os.path.join(output_dir, f"{DIR}-{step}"), ignore_errors=True)


# Settings a resumed run may change: where it logs, saves and runs, not what it computes.
MAY_DIFFER = {
    "output_dir",
    "resume",
    "overwrite",
    "command_line",
    "device",
    "dist_timeout",
    "compile",
    "log_every",
    "save_every",
    "keep_checkpoints",
    "micro_batch_size",
    "model_config",
    "flags",  # every flag, for the record: what matters is compared through the fields above
}


# Settings added since checkpoints were first written, with the value an older one ran with.
ADDED_LATER = {"head_warmup_steps": 0}


def may_differ(config: dict) -> set[str]:
    """MAY_DIFFER for this run's objective: SimCSE's negatives are the other tweets of a micro-batch, so
    for it the micro-batch size changes the loss, and a resume must keep it."""
    if config.get("run", {}).get("objective") == "simcse":
        return MAY_DIFFER - {"micro_batch_size"}
    return MAY_DIFFER


def differences(saved: dict, current: dict, free: set[str] = MAY_DIFFER) -> list[str]:
    """'name: saved -> now' for every setting, outside `free`, that makes a resumed run a different run."""
    out = []
    for name in sorted(set(saved) | set(current)):
        if name in free:
            continue
        old, new = saved.get(name, ADDED_LATER.get(name)), current.get(name, ADDED_LATER.get(name))
        if isinstance(old, dict) and isinstance(new, dict):
            out += [f"{name}.{d}" for d in differences(old, new, free)]
        elif json.loads(json.dumps(old)) != json.loads(json.dumps(new)):  # tuples and lists compare alike
            out.append(f"{name}: {json.dumps(old)} -> {json.dumps(new)}")
    return out


def load(path: str) -> dict:
    """The checkpoint's parts: model weights, optimizer state_dict, trainer state, config, extra."""
    from safetensors.torch import load_file

    with open(os.path.join(path, CONFIG), encoding="utf-8") as handle:
        config = json.load(handle)
    with open(os.path.join(path, STATE), encoding="utf-8") as handle:
        state = json.load(handle)
    optimizer = _join_optimizer(load_file(os.path.join(path, OPTIMIZER)), state.pop("optimizer"))
    extra_path = os.path.join(path, EXTRA)
    return {
        "weights": load_file(os.path.join(path, "model.safetensors")),
        "optimizer": optimizer,
        "state": state,
        "config": config,
        "extra": load_file(extra_path) if os.path.exists(extra_path) else {},
        "path": path,
    }


def find_resumable(output_dir: str, current_config: dict, log) -> dict | None:
    """The newest readable checkpoint whose settings match this run; None if there is none.

    A checkpoint from a run with other settings is refused by name of the settings, not
    trained on: it would silently continue some other experiment."""
    from safetensors import SafetensorError

    found = steps(output_dir)
    if not found:
        log(f"--resume: no checkpoint in {output_dir}, starting fresh")
        return None
    for step in found:
        path = os.path.join(output_dir, f"{DIR}-{step}")
        try:
            loaded = load(path)
        except (OSError, ValueError, KeyError, SafetensorError) as exc:
            log(
                f"warning: {path} is unreadable ({type(exc).__name__}: {str(exc)[:120]}); "
                "trying the previous checkpoint"
            )
            continue
        changed = differences(loaded["config"], current_config, may_differ(current_config))
        if changed:
            raise ConfigError(
                f"--resume: {path} was written with other settings ({'; '.join(changed)}); "
                "use the same settings, or --overwrite to start again"
            )
        return loaded
    raise ConfigError(f"--resume: no readable checkpoint in {output_dir}; remove them or run with --overwrite")


def restore_model(model, weights: dict, path: str) -> None:
    """Load checkpoint weights; tied copies (the MLM decoder) may be absent from the file."""
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        raise ConfigError(f"--resume: {path} does not fit this model ({str(exc).splitlines()[-1].strip()})") from None
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    state = model.state_dict()
    loaded_pointers = {state[k].data_ptr() for k in weights if k in state}
    missing = [k for k in result.missing_keys if state[k].data_ptr() not in loaded_pointers]
    if missing or result.unexpected_keys:
        raise ConfigError(
            f"--resume: {path} does not fit this model (missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
