"""The policy for a training command's output directory: one run per directory.

A previous run's files would be served with (or instead of) the new ones, so a directory
that holds one is refused unless the command continues it (--resume) or replaces it
(--overwrite).  --overwrite removes exactly what a run writes, so a directory shared with
other files loses nothing else.  Each file name comes from the module that writes it.
"""

from __future__ import annotations

import os
import re
import shutil

from tweetkit import linear, modeling, plotting, sweep
from tweetkit.errors import UsageError
from tweetkit.train import best, checkpoint

SEED_DIR = "seed"  # DIR/seed-N: one run of finetune --seeds
OLD_SWEEP_DIR = "sweep"  # DIR/sweep-N: a grid point of an older tweetkit's sweep

RUN_FILES = (
    *modeling.SAVED_MODEL_FILES,
    *modeling.SAVED_TOKENIZER_FILES,
    checkpoint.CONFIG,
    linear.MODEL_INFO,
    linear.WEIGHTS,
    linear.VOCABULARY,
    linear.PICKLED,
    best.METRICS_FILE,
    sweep.STUDY_FILE,
    *plotting.study_plot_files(),
)
RUN_DIR_NAMES = (checkpoint.DIR, SEED_DIR, OLD_SWEEP_DIR, sweep.TRIAL_DIR)  # each as NAME-N, or NAME-N.partial
RUN_DIRS = re.compile(rf"^({'|'.join(RUN_DIR_NAMES)})-[0-9]+(\.partial)?$")


def previous_run(path: str) -> list[str]:
    """The names in `path` that a run wrote, sorted."""
    names = os.listdir(path) if os.path.isdir(path) else []
    return sorted(name for name in names if name in RUN_FILES or RUN_DIRS.match(name))


def prepare_output_dir(path: str, resume: bool = False, overwrite: bool = False, remove: bool = True) -> None:
    """Refuse to mix two runs in one directory: --resume continues the previous one,
    --overwrite removes it (`remove` False: the caller replaces it itself)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"-o {path}: exists and is not a directory")
    previous = previous_run(path)
    if not previous or resume:
        return
    if overwrite and not remove:
        return
    if not overwrite:
        shown = ", ".join(previous[:4]) + (", ..." if len(previous) > 4 else "")
        raise UsageError(
            f"-o {path} holds a previous run ({shown}): add --overwrite to replace it, or --resume to continue it"
        )
    for name in previous:
        target = os.path.join(path, name)
        shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
