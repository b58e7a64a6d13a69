"""Sentence embeddings of tweets: the mean of an encoder's last hidden states over the real
(unpadded) tokens, as sentence-transformers pools MiniLM.  Any HF model directory tweetkit
writes or reads (a base encoder, a pretrain output, a fine-tuned classifier) gives its
encoder; the heads are not used."""

from __future__ import annotations

import torch

from tweetkit.modeling import load_pretrained, load_tokenizer, resolve_device
from tweetkit.threads import configure_torch


class Encoder:
    def __init__(self, path: str, device: str = "auto", max_length: int = 128):
        from transformers import AutoModel

        configure_torch()
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(path)
        self.model = load_pretrained(AutoModel, path).to(self.device).eval()
        self.max_length = max_length

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 64) -> list[list[float]]:
        """One vector per text, in input order; batches are formed over length-sorted texts,
        and each vector does not depend on its batch (padding is masked out)."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        out: list = [None] * len(texts)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
            hidden = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state
            weights = mask.to(hidden.device, hidden.dtype)[:, :, None]
            pooled = ((hidden * weights).sum(1) / weights.sum(1).clamp(min=1)).float().cpu()
            for row, i in enumerate(chunk):
                out[i] = pooled[row].tolist()
        return out


class EmbedStep:
    """The `embed` transform: adds `output_field` (the vector) to each record."""

    def __init__(self, path: str, field: str, output_field: str, batch_size: int, device: str, digits: int):
        self.encoder = Encoder(path, device)
        self.field, self.output_field, self.batch_size, self.digits = field, output_field, batch_size, digits

    def __call__(self, records: list[dict]) -> list[dict]:
        vectors = self.encoder.embed([r[self.field] for r in records], self.batch_size)
        for record, vector in zip(records, vectors):
            record[self.output_field] = [round(v, self.digits) for v in vector]
        return records
