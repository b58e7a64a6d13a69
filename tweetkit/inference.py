"""Batched inference with a fine-tuned classifier or tagger, shared by `predict`,
`evaluate --model` and the validation of fine-tuning, so that a model is scored as it
will be used.

Sequence batches hold texts of one token length, so they need no padding and no attention
mask; tagging batches are sorted by word count and padded.
"""

from __future__ import annotations

import contextlib
import itertools

import torch


def equal_length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of at most batch_size whose sequences all have the same length,
    shortest first.  Inference on them needs no padding and no attention mask (SDPA then
    runs its maskless kernel), at the cost of one short batch per length."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches = []
    for _, group in itertools.groupby(order, key=lengths.__getitem__):
        group = list(group)
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return batches


@contextlib.contextmanager
def inference(model):
    """The device a model's inputs go to, the model in eval mode meanwhile.  A model that is
    not a torch module (an ONNX Runtime session, tweetkit.onnx_runtime) runs on the CPU."""
    if not isinstance(model, torch.nn.Module):
        yield torch.device("cpu")
        return
    was_training = model.training
    model.eval()
    try:
        yield next(model.parameters()).device
    finally:
        model.train(was_training)


@torch.inference_mode()
def predict_sequences(model, tokenizer, texts, kind, label_names, batch_size, max_length, threshold=0.5) -> list[tuple]:
    """(pred, scores) per text, in input order; each batch holds texts of one length (no padding)."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    results: list = [None] * len(texts)
    with inference(model) as device:
        for chunk in equal_length_batches([len(ids) for ids in encoded], batch_size):
            ids = torch.tensor([encoded[i] for i in chunk], dtype=torch.long, device=device)
            logits = model(input_ids=ids).logits.float().cpu()  # no padding: no mask
            for row, i in enumerate(chunk):
                results[i] = sequence_result(logits[row], kind, label_names, threshold)
    return results


def sequence_result(logits: torch.Tensor, kind: str, label_names, threshold: float) -> tuple:
    """(pred, scores) of one text's logits."""
    if kind == "regression":
        return float(logits[0]), None
    if kind == "multilabel":
        probs = torch.sigmoid(logits).tolist()
        return [label_names[j] for j, p in enumerate(probs) if p >= threshold], dict(
            zip(label_names, [round(p, 6) for p in probs])
        )
    probs = torch.softmax(logits, -1).tolist()
    best = max(range(len(probs)), key=probs.__getitem__)
    return label_names[best], dict(zip(label_names, [round(p, 6) for p in probs]))


@torch.inference_mode()
def predict_tags(model, tokenizer, word_lists, label_names, batch_size, max_length, fallback="O") -> list[list[str]]:
    """A tag per word, in input order; words cut off by max_length get `fallback`."""
    fallback = fallback if fallback in label_names else label_names[0]
    order = sorted(range(len(word_lists)), key=lambda i: len(word_lists[i]))
    results: list = [None] * len(word_lists)
    with inference(model) as device:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encoded = tokenizer(
                [word_lists[i] for i in chunk],
                is_split_into_words=True,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = model(
                input_ids=encoded["input_ids"].to(device), attention_mask=encoded["attention_mask"].to(device)
            ).logits
            best = logits.argmax(-1).cpu()
            for row, i in enumerate(chunk):
                tags = [fallback] * len(word_lists[i])
                previous = None
                for position, word in enumerate(encoded.word_ids(row)):
                    if word is not None and word != previous:
                        tags[word] = label_names[int(best[row, position])]
                    previous = word
                results[i] = tags
    return results
