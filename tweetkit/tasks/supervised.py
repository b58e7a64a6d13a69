"""Fine-tuning tasks on the shared training core: sequence classification (single-
and multi-label), regression, and tagging.  Validation predicts as `predict` does
(tweetkit.inference).

Batches are length-bucketed (sorted by length within chunks of 50 batches, then the
batches shuffled) and padded to their longest member.  Tagging labels the first
subword of each word and ignores the rest, as BERTweet did; it needs a fast
tokenizer for `word_ids()`.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from tweetkit import kinds
from tweetkit.inference import predict_sequences, predict_tags


def bucketed_order(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[int]:
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lengths.__getitem__)
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    # The loop slices the order every batch_size examples: a short batch in the middle
    # would shift every later slice across two buckets (and double their padding), so
    # short batches go last, where the loop's full-batches-only epoch leaves them out.
    batches = [b for b in batches if len(b) == batch_size] + [b for b in batches if len(b) < batch_size]
    return [i for batch in batches for i in batch]


def _pad(sequences: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


class SupervisedTask:
    """What the fine-tuning tasks share: length-bucketed order, padding, the forward pass."""

    train_ids: list[list[int]]
    batch_size: int
    seed: int

    def wrap(self, model):
        return model

    def num_examples(self) -> int:
        return len(self.train_ids)

    def order(self, epoch: int) -> list[int]:
        return bucketed_order([len(ids) for ids in self.train_ids], self.batch_size, self.seed, epoch)

    def padded(self, indices: list[int]) -> dict:
        ids = _pad([self.train_ids[i] for i in indices], self.tokenizer.pad_token_id)
        mask = ids != self.tokenizer.pad_token_id
        return {"input_ids": ids, "attention_mask": mask.long(), "tokens": int(mask.sum())}

    def logits(self, module, batch: dict) -> torch.Tensor:
        device = next(module.parameters()).device
        return module(
            input_ids=batch["input_ids"].to(device, non_blocking=True),
            attention_mask=batch["attention_mask"].to(device, non_blocking=True),
        ).logits.float()


class SequenceTask(SupervisedTask):
    """classification | multilabel | regression over one text field."""

    def __init__(
        self,
        kind,
        tokenizer,
        train,
        validation,
        label_names,
        max_length,
        batch_size,
        seed,
        positive_label=None,
        threshold=0.5,
    ):
        self.kind, self.tokenizer, self.max_length = kind, tokenizer, max_length
        self.batch_size, self.seed, self.positive_label, self.threshold = batch_size, seed, positive_label, threshold
        self.label_names = label_names  # index -> label (not for regression)
        self.label_index = {name: i for i, name in enumerate(label_names or [])}
        self.train_ids = self.encode([text for text, _ in train])
        self.train_targets = [self.target(label) for _, label in train]
        self.validation = validation

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]

    def target(self, label):
        if self.kind == "regression":
            return float(label)
        if self.kind == "multilabel":
            vector = [0.0] * len(self.label_names)
            for name in label:
                vector[self.label_index[str(name)]] = 1.0
            return vector
        return self.label_index[str(label)]

    def collate(self, indices: list[int], epoch: int) -> dict:
        targets = [self.train_targets[i] for i in indices]
        dtype = torch.long if self.kind == "classification" else torch.float
        return {**self.padded(indices), "targets": torch.tensor(targets, dtype=dtype), "count": len(indices)}

    def loss(self, module, batch):
        logits = self.logits(module, batch)
        targets = batch["targets"].to(logits.device, non_blocking=True)
        if self.kind == "classification":
            return F.cross_entropy(logits, targets, reduction="sum"), batch["count"]
        if self.kind == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(self.label_names), batch[
                "count"
            ]
        return F.mse_loss(logits.squeeze(-1), targets, reduction="sum"), batch["count"]

    def evaluate(self, module) -> dict:
        if not self.validation:
            return {}
        texts, gold = [t for t, _ in self.validation], [label for _, label in self.validation]
        predictions = predict_sequences(
            module, self.tokenizer, texts, self.kind, self.label_names, 64, self.max_length, self.threshold
        )
        scores = kinds.get(self.kind).score(
            gold,
            [p for p, _ in predictions],
            self.label_names,
            self.positive_label,
            [s for _, s in predictions],
        )
        return {f"validation_{k}": v for k, v in scores.items()}


class TaggingTask(SupervisedTask):
    """One tag per word; the first subword of each word carries it."""

    def __init__(self, tokenizer, train, validation, label_names, max_length, batch_size, seed):
        self.tokenizer, self.max_length, self.batch_size, self.seed = tokenizer, max_length, batch_size, seed
        self.label_names = label_names
        self.label_index = {name: i for i, name in enumerate(label_names)}
        self.kind = "tagging"
        self.train_ids, self.train_labels = [], []
        encoded = tokenizer(
            [words for words, _ in train], is_split_into_words=True, truncation=True, max_length=max_length
        )
        for row, (_, tags) in enumerate(train):
            labels, previous = [], None
            for word in encoded.word_ids(row):
                labels.append(self.label_index[tags[word]] if word is not None and word != previous else -100)
                previous = word
            self.train_ids.append(encoded["input_ids"][row])
            self.train_labels.append(labels)
        self.validation = validation

    def collate(self, indices: list[int], epoch: int) -> dict:
        labels = _pad([self.train_labels[i] for i in indices], -100)
        return {**self.padded(indices), "labels": labels, "count": int((labels != -100).sum())}

    def loss(self, module, batch):
        logits = self.logits(module, batch)
        labels = batch["labels"].to(logits.device, non_blocking=True).reshape(-1)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels, ignore_index=-100, reduction="sum"), batch[
            "count"
        ]

    def evaluate(self, module) -> dict:
        if not self.validation:
            return {}
        pred = predict_tags(
            module, self.tokenizer, [w for w, _ in self.validation], self.label_names, 64, self.max_length
        )
        return {
            f"validation_{k}": v for k, v in kinds.get("tagging").score([t for _, t in self.validation], pred).items()
        }
