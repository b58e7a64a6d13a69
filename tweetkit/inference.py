"""Batched inference with a fine-tuned classifier or tagger, shared by `predict`,
`evaluate --model` and the validation of fine-tuning, so that a model is scored as it
will be used.

Sequence batches hold texts of one token length, so they need no padding and no attention
mask; tagging batches are sorted by word count and padded.

Two runtimes share the batching and the making of records: a torch model with an HF tokenizer
(predict_sequences, predict_tags), and an ONNX Runtime session with a `tokenizers` tokenizer
and numpy (predict_sequences_onnx, predict_tags_onnx), which import neither torch nor
transformers: a cached graph then predicts without their start-up.
"""

from __future__ import annotations

import contextlib
import itertools


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
    not a torch module runs on the CPU."""
    import torch

    if not isinstance(model, torch.nn.Module):
        yield torch.device("cpu")
        return
    was_training = model.training
    model.eval()
    try:
        yield next(model.parameters()).device
    finally:
        model.train(was_training)


def predict_sequences(model, tokenizer, texts, kind, label_names, batch_size, max_length, threshold=0.5) -> list[tuple]:
    """(pred, scores) per text, in input order; each batch holds texts of one length (no padding)."""
    import torch

    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    results: list = [None] * len(texts)
    with inference(model) as device, torch.inference_mode():
        for chunk in equal_length_batches([len(ids) for ids in encoded], batch_size):
            ids = torch.tensor([encoded[i] for i in chunk], dtype=torch.long, device=device)
            logits = model(input_ids=ids).logits.float().cpu()  # no padding: no mask
            for row, i in enumerate(chunk):
                results[i] = sequence_result(logits[row], kind, label_names, threshold)
    return results


def sequence_result(logits, kind: str, label_names, threshold: float) -> tuple:
    """(pred, scores) of one text's logits (a torch tensor)."""
    import torch

    if kind == "regression":
        return float(logits[0]), None
    probs = (torch.sigmoid(logits) if kind == "multilabel" else torch.softmax(logits, -1)).tolist()
    return scored(probs, kind, label_names, threshold)


def scored(probs: list[float], kind: str, label_names, threshold: float) -> tuple:
    """(pred, scores) of one text's probabilities (sigmoid for multilabel, else softmax): the
    labels at or above `threshold`, or the most probable one; scores rounded to 6 places."""
    scores = dict(zip(label_names, [round(p, 6) for p in probs]))
    if kind == "multilabel":
        return [label_names[j] for j, p in enumerate(probs) if p >= threshold], scores
    return label_names[max(range(len(probs)), key=probs.__getitem__)], scores


def predict_tags(model, tokenizer, word_lists, label_names, batch_size, max_length, fallback="O") -> list[list[str]]:
    """A tag per word, in input order; words cut off by max_length get `fallback`."""
    import torch

    fallback = fallback if fallback in label_names else label_names[0]
    order = sorted(range(len(word_lists)), key=lambda i: len(word_lists[i]))
    results: list = [None] * len(word_lists)
    with inference(model) as device, torch.inference_mode():
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
            best = logits.argmax(-1).cpu().tolist()
            for row, i in enumerate(chunk):
                results[i] = word_tags(encoded.word_ids(row), best[row], len(word_lists[i]), label_names, fallback)
    return results


def word_tags(word_ids: list, best: list[int], words: int, label_names, fallback: str) -> list[str]:
    """A tag per word: the label of its first token (`best`: a label index per token)."""
    tags = [fallback] * words
    previous = None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous:
            tags[word] = label_names[best[position]]
        previous = word
    return tags


# --- ONNX Runtime: the same batches and records with numpy, without torch or transformers -----


def predict_sequences_onnx(model, tokenizer, texts, kind, label_names, batch_size, threshold=0.5) -> list[tuple]:
    """predict_sequences for an onnx_runtime.OnnxModel and a `tokenizers.Tokenizer` that
    truncates as the HF one does (onnx_runtime.load_tokenizer).  Probabilities in float64: they
    may differ from torch's float32 ones in the sixth decimal, not in the labels."""
    import numpy as np

    encoded = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
    results: list = [None] * len(texts)
    for chunk in equal_length_batches([len(ids) for ids in encoded], batch_size):
        logits = model(np.array([encoded[i] for i in chunk], dtype=np.int64)).astype(np.float64)
        if kind == "multilabel":
            probs = 1.0 / (1.0 + np.exp(-logits))
        else:
            exps = np.exp(logits - logits.max(-1, keepdims=True))
            probs = exps / exps.sum(-1, keepdims=True)
        for row, i in enumerate(chunk):
            if kind == "regression":
                results[i] = float(np.float32(logits[row, 0])), None
            else:
                results[i] = scored(probs[row].tolist(), kind, label_names, threshold)
    return results


def predict_tags_onnx(model, tokenizer, word_lists, label_names, batch_size, fallback="O") -> list[list[str]]:
    """predict_tags for an onnx_runtime.OnnxModel and a `tokenizers.Tokenizer` that truncates
    and pads as the HF one does."""
    import numpy as np

    fallback = fallback if fallback in label_names else label_names[0]
    order = sorted(range(len(word_lists)), key=lambda i: len(word_lists[i]))
    results: list = [None] * len(word_lists)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        encodings = tokenizer.encode_batch([word_lists[i] for i in chunk], is_pretokenized=True)
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        best = model(ids, mask).argmax(-1).tolist()
        for row, i in enumerate(chunk):
            results[i] = word_tags(encodings[row].word_ids, best[row], len(word_lists[i]), label_names, fallback)
    return results
