"""The training configuration: one flat dataclass, saved beside every output."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field


@dataclass
class TrainConfig:
    output_dir: str = "out"  # where checkpoints and the final model go
    seed: int = 0  # seeds data order, masking, dropout and initialisation
    batch_size: int = 64  # GLOBAL batch (sequences per optimizer step), whatever the number of processes
    micro_batch_size: int = 0  # sequences per forward pass per process; 0 = batch_size / processes
    max_steps: int = 0  # optimizer steps; 0 = derive from epochs
    epochs: float = 1.0  # passes over the training data when max_steps is 0
    lr: float = 5e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not on biases and LayerNorm)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas (RoBERTa used 0.98)
    eps: float = 1e-6  # AdamW epsilon
    warmup_steps: int = 0  # linear warm-up steps before linear decay to 0
    warmup_ratio: float = 0.06  # used when warmup_steps is 0: share of total steps
    max_grad_norm: float = 1.0  # gradient clipping; 0 disables
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + loss scaling, GPU only)
    save_every: int = 0  # checkpoint every N steps; 0 = only at the end (and on Ctrl-C)
    keep_checkpoints: int = 0  # keep the N newest checkpoints; 0 = keep all
    eval_every: int = 0  # validation every N steps; 0 = only at the end
    log_every: int = 10  # a metrics line on stdout every N steps
    resume: bool = False  # continue from the latest checkpoint in output_dir
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    command_line: list[str] = field(default_factory=list)  # the resolved command, for the record
    run: dict = field(default_factory=dict)  # the task's settings (data, tokenizer, max length, labels, ...)
    model_config: dict = field(default_factory=dict)  # the model's own config, for the record

    def to_dict(self) -> dict:
        data = asdict(self)
        data["command_line"] = self.command_line or sys.argv
        data["betas"] = list(self.betas)
        return data

    def save(self, directory: str, name: str = "tweetkit_train_config.json") -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2)
            handle.write("\n")
