"""Atomic checkpoints: written to a temporary directory, then renamed into place."""

from __future__ import annotations

import os
import re
import shutil

import torch

PATTERN = re.compile(r"^checkpoint-(\d+)$")


def save(output_dir: str, step: int, state: dict, model) -> str:
    """Write checkpoint-STEP atomically (rank 0 only); a crash leaves no half checkpoint."""
    final = os.path.join(output_dir, f"checkpoint-{step}")
    partial = final + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    model.save_pretrained(partial, safe_serialization=True)
    torch.save(state, os.path.join(partial, "trainer_state.pt"))
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(partial, final)
    return final


def latest(output_dir: str) -> str | None:
    if not os.path.isdir(output_dir):
        return None
    steps = [int(m.group(1)) for name in os.listdir(output_dir) if (m := PATTERN.match(name))]
    return os.path.join(output_dir, f"checkpoint-{max(steps)}") if steps else None


def load_state(checkpoint_dir: str) -> dict:
    return torch.load(os.path.join(checkpoint_dir, "trainer_state.pt"), map_location="cpu", weights_only=False)
