"""The training configuration: one flat dataclass, saved beside every output.

Each field carries its help text; `tweetkit.options.train_options` makes the click
flags of `pretrain` and `finetune` from it, so a setting is defined once.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field


def setting(default, help: str, **flag):
    """A field with its help text and, optionally, click details (min, choices, ...)."""
    return field(default=default, metadata={"help": help, **flag})


@dataclass
class TrainConfig:
    output_dir: str = setting("out", "Where checkpoints and the final model go.")
    seed: int = setting(0, "Seeds data order, masking, dropout and initialisation.", min=None)
    batch_size: int = setting(
        64, "GLOBAL batch (sequences per optimizer step), whatever the number of processes.", min=1
    )
    micro_batch_size: int = setting(0, "Sequences per forward pass per process [default: all of its share].")
    max_steps: int = setting(0, "Optimizer steps [default: from --epochs].")
    epochs: float = setting(1.0, "Passes over the training data when --max-steps is not given.", min_open=True)
    lr: float = setting(5e-4, "Peak learning rate (AdamW).")
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay (not on biases and LayerNorm).")
    betas: tuple[float, float] = setting((0.9, 0.98), "AdamW betas, e.g. 0.9,0.98 (RoBERTa).")
    eps: float = setting(1e-6, "AdamW epsilon.")
    warmup_steps: int = setting(
        0, "Linear warm-up steps before linear decay to 0 [default: --warmup-ratio of the steps]."
    )
    warmup_ratio: float = setting(0.06, "Share of the steps spent warming up when --warmup-steps is 0.")
    head_warmup_steps: int = setting(
        0,
        "With --init-from: train only the new MLM head (and new vocabulary rows) for the first N steps, "
        "then everything (LP-FT); each phase gets its own learning-rate warm-up and decay.",
    )
    max_grad_norm: float = setting(1.0, "Gradient clipping; 0 disables.")
    precision: str = setting(
        "fp32", "fp32, bf16 (autocast) or fp16 (autocast + loss scaling, GPU only).", choices=("fp32", "bf16", "fp16")
    )
    save_every: int = setting(0, "Checkpoint every N steps [default: at the end, and on Ctrl-C or SIGTERM].")
    keep_checkpoints: int = setting(0, "Keep the N newest checkpoints; 0 keeps all.")
    eval_every: int = setting(0, "Validation every N steps [default: at the end].")
    log_every: int = setting(10, "A metrics line on stdout every N steps.", min=1)
    resume: bool = setting(False, "Continue from the newest checkpoint in -o that has the same settings.")
    overwrite: bool = setting(False, "Replace a previous run in -o (its model and checkpoints are removed first).")
    device: str = setting("auto", "auto (the GPU if there is one), cpu or cuda.", choices=("auto", "cpu", "cuda"))
    compile: bool = setting(
        False, "torch.compile the model (inductor; dynamic shapes, so batches of new lengths do not recompile)."
    )
    dist_timeout: int = setting(
        7200, "Under torchrun: seconds a process waits for the others in a collective before the job fails.", min=1
    )
    command_line: list[str] = field(default_factory=list)  # the resolved command, for the record
    run: dict = field(default_factory=dict)  # the task's settings (data, tokenizer, max length, labels, ...)
    model_config: dict = field(default_factory=dict)  # the model's own config, for the record
    flags: dict = field(default_factory=dict)  # every flag as resolved: `--config` takes this file back

    def to_dict(self) -> dict:
        data = asdict(self)
        data["command_line"] = self.command_line or sys.argv
        data["betas"] = list(self.betas)
        for name in ("resume", "overwrite"):  # how this process treated -o, not a setting of the run
            del data[name]
        return data

    def save(self, directory: str, name: str = "tweetkit_train_config.json") -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, default=str)
            handle.write("\n")
