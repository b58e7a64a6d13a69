"""Keeping the best validation epoch, and early stopping, for fine-tuning (and the lowest
validation loss for pretrain --keep-best).

The keeper's state (the best value, its step and metrics, the epochs waited) and the
best weights travel in every checkpoint, so a resumed run keeps the same best epoch
as the uninterrupted one would.
"""

from __future__ import annotations

import math

METRICS_FILE = "validation_metrics.json"  # OUTPUT/: the kept weights' step and validation figures


class BestKeeper:
    def __init__(self, metric: str, patience: int = 0, report=None, lower_is_better: bool = False):
        """`report(step, value)` sees every validation value (a sweep's pruner); it may raise.
        Which way the metric is better is the caller's (its task kind's) to say."""
        self.metric, self.patience, self.report = metric, patience, report
        self.lower_is_better = lower_is_better
        self.key = f"validation_{metric}"
        self.value, self.step, self.waited = -math.inf, 0, 0
        self.metrics: dict = {}
        self.weights: dict | None = None

    def observe(self, step: int, results: dict, model) -> bool:
        """Record a validation result; True when patience has run out."""
        if self.report is not None:
            self.report(step, results[self.key])
        value = -results[self.key] if self.lower_is_better else results[self.key]
        if value > self.value:
            self.value, self.step, self.metrics, self.waited = value, step, dict(results), 0
            self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif step != self.step:
            self.waited += 1
        return self.patience > 0 and self.waited >= self.patience

    def state(self) -> dict:
        return {
            "metric": self.metric,
            "value": self.value,
            "step": self.step,
            "waited": self.waited,
            "metrics": self.metrics,
        }

    def restore(self, state: dict | None, tensors: dict) -> None:
        if state:
            self.value, self.step, self.waited, self.metrics = (
                state["value"],
                state["step"],
                state["waited"],
                state["metrics"],
            )
            self.weights = dict(tensors) or None

    def load_best_into(self, model) -> None:
        if self.weights is not None:
            model.load_state_dict(self.weights)
