"""Anchored continued pretraining: an objective (MLM, SimCSE, TSDAE) plus a pull back toward
the encoder it started from, so that adapting to tweets keeps what the encoder knew.

Two anchors, each weighted by --anchor:
  l2sp     L2-SP (Li et al. 2018): WEIGHT * sum ||theta - theta_start||^2 over the encoder's
           parameters (embeddings and layers; the MLM head is free to learn).
  distill  WEIGHT * the mean, over the batch's tweets, of the mean squared difference between
           each tweet's mean-pooled embedding under the current encoder and under the frozen
           starting one, on the same packed input (MSE, as Reimers & Gurevych 2020 distil
           sentence embeddings).  It holds exactly what the sentence tasks read, and leaves
           the weights free to move where the embedding does not depend on them.

Both are computed in the forward of the module the training loop wraps, so under DDP they
are part of the loss every process backpropagates.  The starting encoder is a frozen copy
held outside the module's registered submodules: no DDP parameter, in no checkpoint; a
resumed run rebuilds it from --init-from, as it rebuilds the model it then restores.

A term enters a micro-batch's loss sum as value x the micro-batch's count (masked tokens,
tweets), so after the loop divides by the global count the step's loss is the objective's
mean plus the anchor: L2-SP exactly (the weights are the same for every micro-batch of a
step); the distillation as a count-weighted mean of micro-batch means.
"""

from __future__ import annotations

import copy

import torch

from tweetkit.errors import UsageError
from tweetkit.tasks.mlm import packed_attention

KINDS = ("l2sp", "distill", "both")
DEFAULT_KIND = "distill"


def anchor_weights(text: str, kind: str | None) -> dict:
    """{"l2sp": W} / {"distill": W} / both, from --anchor W [--anchor-kind]; with both,
    W applies to each, or "L2SP,DISTILL" gives each its own (their scales differ widely)."""
    kind = kind or DEFAULT_KIND
    parts = text.split(",")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise UsageError(f"--anchor {text}: expected a number (or L2SP,DISTILL with --anchor-kind both)") from None
    if len(values) > (2 if kind == "both" else 1) or any(not (v > 0 and v < float("inf")) for v in values):
        raise UsageError(f"--anchor {text}: expected one positive weight (two, L2SP,DISTILL, with --anchor-kind both)")
    if kind == "both":
        return {"l2sp": values[0], "distill": values[-1]}
    return {kind: values[0]}


class AnchoredTask:
    """`task` with the anchor terms added to its loss; the Task protocol of train.loop."""

    def __init__(self, task, encoder, weights: dict):
        self.task, self.weights = task, dict(weights)
        # The starting encoder, frozen: the L2-SP target and the distillation teacher.
        self.start = copy.deepcopy(encoder).requires_grad_(False).eval()

    def num_examples(self) -> int:
        return self.task.num_examples()

    def collate(self, indices: list[int], epoch: int, corpus=None, rows=None) -> dict:
        return self.task.collate(indices, epoch, corpus, rows)

    def wrap(self, model):
        inner = self.task.wrap(model)
        self.start.to(next(inner.encoder.parameters()).device)
        return AnchoredModule(inner, self.start, self.weights)

    def penalty(self, terms: dict) -> torch.Tensor:
        """The weighted anchor of one forward (a mean: the caller multiplies by the count)."""
        total = torch.zeros((), device=next(iter(terms.values())).device)
        if "l2sp" in terms:
            total = total + self.weights["l2sp"] * terms["l2sp"]
        if "distill_sum" in terms:
            total = total + self.weights["distill"] * terms["distill_sum"] / terms["tweets"].clamp(min=1)
        return total

    def loss(self, module, batch: dict):
        split = SplitTerms(module)
        loss, count = self.task.loss(split, batch)
        return loss + self.penalty(split.terms[-1]) * count, count

    def evaluate(self, module) -> dict:
        """The objective's validation figures, and how far the encoder is from its start:
        validation_l2sp (||theta - theta_start||^2) and validation_drift (the mean squared
        difference of the validation tweets' embeddings), whichever the anchor computes."""
        split = SplitTerms(module)
        metrics = self.task.evaluate(split)
        if split.terms:
            if "l2sp" in split.terms[-1]:
                metrics["validation_l2sp"] = round(float(split.terms[-1]["l2sp"]), 6)
            if "distill_sum" in split.terms[-1]:
                tweets = sum(float(t["tweets"]) for t in split.terms)
                drift = sum(float(t["distill_sum"]) for t in split.terms) / max(tweets, 1.0)
                metrics["validation_drift"] = round(drift, 8)
        return metrics


class SplitTerms:
    """What the objective's loss and evaluation call: the anchored module (or its DDP
    wrapper), with the anchor terms of each forward set aside for the anchored task."""

    def __init__(self, module):
        self.module, self.terms = module, []

    def __getattr__(self, name):
        return getattr(self.module, name)

    def __call__(self, *args):
        output, terms = self.module(*args)
        self.terms.append(terms)
        return output


class AnchoredModule(torch.nn.Module):
    """The objective's module; its forward also returns the anchor terms, unweighted.

    Every objective's forward takes (input_ids, segments, position_ids, ...) of the packed
    rows its encoder reads; the encoder's output is caught by a hook, so the distillation
    costs one forward of the frozen encoder and no second one of the trained encoder."""

    def __init__(self, inner, start, weights: dict):
        super().__init__()
        self.inner, self.weights = inner, weights
        self.frozen = [start]  # a list: not a submodule, so neither DDP's nor any checkpoint's
        encoder = inner.encoder
        self.pairs = list(zip(encoder.parameters(), start.parameters()))
        self.catching, self.caught = False, None
        if "distill" in weights:
            encoder.register_forward_hook(self._catch)

    def _catch(self, module, args, output):
        if self.catching:
            self.caught = output.last_hidden_state

    def forward(self, *args):
        self.catching = True
        try:
            output = self.inner(*args)
        finally:
            self.catching = False
        hidden, self.caught = self.caught, None
        terms = {}
        if "l2sp" in self.weights:
            terms["l2sp"] = torch.stack([(p.float() - p0.float()).pow(2).sum() for p, p0 in self.pairs]).sum()
        if "distill" in self.weights:
            terms.update(self.distillation(hidden, *args[:3]))
        return output, terms

    def distillation(self, hidden, input_ids, segments, position_ids) -> dict:
        """distill_sum: the summed per-tweet mean squared difference of mean-pooled embeddings,
        current against start, over the rows' tweets; tweets: how many (both on the device)."""
        with torch.no_grad():
            start = self.frozen[0](
                input_ids=input_ids, attention_mask=packed_attention(segments), position_ids=position_ids
            ).last_hidden_state
        # a SimCSE forward encodes the rows twice: its first copy is these rows
        current_sums, counts = slot_sums(hidden[: input_ids.shape[0]], segments)
        start_sums, _ = slot_sums(start, segments)
        present = counts > 0
        scale = counts.clamp(min=1)[:, None]
        squared = ((current_sums - start_sums) / scale).pow(2).mean(-1)
        return {"distill_sum": (squared * present).sum(), "tweets": present.sum()}


def slot_sums(hidden: torch.Tensor, segments: torch.Tensor):
    """(sums, counts) of the token states of each tweet of packed rows, in slots row x width
    + segment - 1 (empty slots count 0): no host sync to count the tweets, unlike
    contrastive.number_tweets, so it costs the GPU no wait."""
    batch, width = segments.shape
    rows = torch.arange(batch, device=segments.device)[:, None] * width
    dump = batch * width  # where padding goes, dropped
    index = torch.where(segments > 0, rows + segments - 1, dump).reshape(-1)
    flat = hidden.reshape(-1, hidden.shape[-1]).float()
    sums = flat.new_zeros(dump + 1, flat.shape[-1]).index_add_(0, index, flat)
    counts = flat.new_zeros(dump + 1).index_add_(0, index, torch.ones_like(index, dtype=flat.dtype))
    return sums[:dump], counts[:dump]
