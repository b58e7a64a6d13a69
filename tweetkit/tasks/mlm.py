"""Masked language modelling as RoBERTa did it, on packed rows of tweets.

Tweets are tokenized once (cached as memory-mapped arrays), wrapped as <s> tweet </s>
and packed into rows of at most max_length tokens.  Inside a row, attention is
block-diagonal and position ids restart for every tweet, so a packed row computes
exactly what the tweets would compute one by one, without padding.  Masking is
dynamic: drawn anew each time a row is seen, from (seed, epoch, row).  The vocabulary
projection runs only at masked positions.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
import torch.nn.functional as F

from tweetkit.errors import ConfigError, log_to_stderr
from tweetkit.tokenizers import unpadded_backend

# --- tokenised corpora -----------------------------------------------------------------


class TokenizedCorpus:
    """Flat token array plus offsets: tweet i is tokens[offsets[i]:offsets[i+1]]."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray):
        self.tokens, self.offsets = tokens, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def tokenizer_fingerprint(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()[:16]


# Part of the cache key: bumped when the same inputs would tokenize differently (2: no
# padding from tokenizer.json, which used to pad every MiniLM tweet to 128 pieces).
CACHE_FORMAT = "2"


def corpus_key(paths, field: str, tokenizer) -> str:
    parts = [CACHE_FORMAT, tokenizer_fingerprint(tokenizer), field]
    for path in paths:
        stat = os.stat(path)
        parts.append(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:24]


def tokenize_corpus(paths, tokenizer, stream_options, cache_dir: str, log=log_to_stderr) -> TokenizedCorpus:
    """Tokenize the text field of JSONL files once; later runs memory-map the cache.

    The cache key covers the files (path, size, mtime), the field, --on-error and the
    tokenizer, so a changed input or tokenizer is tokenized again, and a corpus cached
    while skipping bad lines is not served to a run that must fail on them."""
    from tweetkit.io import consume_records

    for path in paths:
        if not os.path.isfile(path):
            raise ConfigError(f"cannot read {path}: no such file")
    key = corpus_key(paths, f"{stream_options.field}|on-error={stream_options.on_error}", tokenizer)
    base = os.path.join(cache_dir, key)
    if os.path.exists(base + ".offsets.npy"):
        return TokenizedCorpus(
            np.load(base + ".tokens.npy", mmap_mode="r"), np.load(base + ".offsets.npy", mmap_mode="r")
        )
    log(f"tokenizing {', '.join(paths)} (cached in {cache_dir})")
    backend = unpadded_backend(tokenizer)
    chunks, lengths, pending = [], [], []

    def flush():
        for encoding in backend.encode_batch(pending, add_special_tokens=False):
            chunks.append(np.asarray(encoding.ids, dtype=np.int32))
            lengths.append(len(encoding.ids))
        pending.clear()

    options = stream_options.__class__(**{**stream_options.__dict__, "inputs": list(paths)})
    for record in consume_records("pretrain", options, text_field=options.field):
        pending.append(record[options.field])
        if len(pending) >= 4096:
            flush()
    flush()
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    os.makedirs(cache_dir, exist_ok=True)
    for name, array in (("tokens", tokens), ("offsets", offsets)):  # offsets last: it marks completion
        partial = f"{base}.{name}.partial-{os.getpid()}.npy"  # processes sharing a cache never write one file
        np.save(partial, array)
        os.replace(partial, f"{base}.{name}.npy")
    return TokenizedCorpus(tokens, offsets)


def pack_rows(lengths: np.ndarray, max_length: int) -> list[tuple[int, int]]:
    """Greedy packing in corpus order: [first, last) tweet ranges whose <s> x </s>
    sequences (each cut to max_length) fit in max_length tokens."""
    rows, start, used = [], 0, 0
    for i, length in enumerate(np.minimum(lengths + 2, max_length).tolist()):
        if used + length > max_length and i > start:
            rows.append((start, i))
            start, used = i, 0
        used += length
    if len(lengths) > start:
        rows.append((start, len(lengths)))
    return rows


# --- the model's forward on masked positions only ---------------------------------------


def split_mlm_model(model):
    """(encoder, head) of an HF masked-LM model (RoBERTa-, BERT-family)."""
    encoder = getattr(model, model.base_model_prefix)
    head = getattr(model, "lm_head", None) or getattr(model, "cls", None)
    if head is None:
        raise ConfigError(f"{type(model).__name__}: no masked-LM head found")
    return encoder, head


def packed_attention(segments: torch.Tensor, block_diagonal: bool = True) -> torch.Tensor:
    """The (batch, 1, width, width) boolean attention of packed rows: each token sees the
    tokens of its own tweet.  Made on the model's device from the (batch, width) segments,
    so the batch that crosses to a GPU is width times smaller and its collation cheaper."""
    real = segments > 0
    if block_diagonal:
        attention = (segments[:, :, None] == segments[:, None, :]) & real[:, :, None]
    else:
        attention = real[:, :, None] & real[:, None, :]
    attention.diagonal(dim1=1, dim2=2).fill_(True)  # padding attends to itself: no empty rows
    return attention[:, None, :, :]


class MaskedPositionsLM(torch.nn.Module):
    """Forward that projects to the vocabulary only where tokens are masked.

    A module of its own so DDP wraps it (DDP syncs gradients through forward)."""

    def __init__(self, model, block_diagonal: bool = True):
        super().__init__()
        self.model, self.block_diagonal = model, block_diagonal
        self.encoder, self.head = split_mlm_model(model)

    def forward(self, input_ids, segments, position_ids, masked_positions):
        attention = packed_attention(segments, self.block_diagonal)
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention, position_ids=position_ids
        ).last_hidden_state
        selected = hidden.reshape(-1, hidden.shape[-1]).index_select(0, masked_positions)
        return self.head(selected)


# --- the task --------------------------------------------------------------------------


def token_scores(task, module, accuracy_name: str) -> dict:
    """Cross-entropy and accuracy over the tokens `task` predicts on its validation rows
    (its `logits` of each validation batch against the batch's labels)."""
    if not task.validation_rows:
        return {}
    total, count, correct = 0.0, 0, 0
    for batch in task.validation_batches():
        if batch["count"] == 0:
            continue
        logits = task.logits(module, batch)
        labels = batch["labels"].to(logits.device)
        total += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
        count += batch["count"]
    return {"validation_loss": round(total / max(count, 1), 6), accuracy_name: round(correct / max(count, 1), 6)}


class PackedTweets:
    """Tweets packed into rows of <= max_length tokens, each tweet wrapped as <s> x </s>,
    with block-diagonal attention and positions that restart per tweet: what the objectives
    on packed rows (MLMTask, tasks.contrastive.SimCSETask) share."""

    def __init__(
        self,
        train: TokenizedCorpus,
        validation: TokenizedCorpus | None,
        tokenizer,
        max_length: int,
        seed: int,
        position_offset: int,
    ):
        self.train_data, self.validation_data, self.tokenizer = train, validation, tokenizer
        self.max_length, self.seed = max_length, seed
        self.position_offset = position_offset  # RoBERTa counts positions from pad_token_id + 1
        self.bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
        self.eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        self.pad = tokenizer.pad_token_id
        if None in (self.bos, self.eos, self.pad):
            raise ConfigError("the tokenizer needs <s>/[CLS], </s>/[SEP] and pad tokens")
        self.train_rows = pack_rows(train.lengths(), max_length)
        self.validation_rows = pack_rows(validation.lengths(), max_length) if validation is not None else []
        self.block_diagonal = True  # False only to measure what the mask costs (bench/pretrain.py)

    def num_examples(self) -> int:
        return len(self.train_rows)

    def packed(self, indices: list[int], corpus: TokenizedCorpus | None = None, rows=None) -> dict:
        """input_ids, segments (1, 2, ... per tweet of a row; 0 for padding) and position_ids of
        the rows `indices` (of the training corpus unless `corpus` and its `rows` are given);
        the attention is made from the segments where the model runs (packed_attention).  Built
        with array operations over all the batch's tokens at once: on a GPU this runs beside every
        step and must keep up."""
        corpus = self.train_data if corpus is None else corpus
        rows = self.train_rows if rows is None else rows
        bounds = np.asarray([rows[i] for i in indices], dtype=np.int64).reshape(-1, 2)
        counts = bounds[:, 1] - bounds[:, 0]  # tweets per row
        first_of_row = np.cumsum(counts) - counts  # each row's first tweet among the batch's
        row_of_tweet = np.repeat(np.arange(len(bounds)), counts)
        segment = np.arange(counts.sum()) - first_of_row[row_of_tweet]  # 0, 1, ... within its row
        tweet = bounds[row_of_tweet, 0] + segment
        offsets = np.asarray(corpus.offsets)
        starts = offsets[tweet]
        length = np.minimum(offsets[tweet + 1] - starts, self.max_length - 2) + 2  # <s> body </s>
        before = np.cumsum(length) - length  # where each tweet begins among the batch's tokens
        start_in_row = before - before[first_of_row][row_of_tweet]
        width = int(np.add.reduceat(length, first_of_row).max())
        # one entry per token of the batch: its tweet, its place in the tweet, where it goes
        owner = np.repeat(np.arange(len(tweet)), length)
        place = np.arange(int(length.sum())) - before[owner]
        destination = row_of_tweet[owner] * width + start_in_row[owner] + place
        body = (place > 0) & (place < length[owner] - 1)
        ids = np.where(place == 0, self.bos, self.eos).astype(np.int64)
        if body.any():
            ids[body] = np.asarray(corpus.tokens[starts[owner[body]] + place[body] - 1], dtype=np.int64)
        batch = len(bounds)
        flat_ids = torch.full((batch * width,), self.pad, dtype=torch.long)
        flat_segments = torch.zeros(batch * width, dtype=torch.long)
        flat_positions = torch.full((batch * width,), self.position_offset, dtype=torch.long)
        where = torch.from_numpy(destination)
        flat_ids[where] = torch.from_numpy(ids)
        flat_segments[where] = torch.from_numpy(segment[owner] + 1)
        flat_positions[where] = torch.from_numpy(place + self.position_offset)
        return {"input_ids": flat_ids.view(batch, width), "segments": flat_segments.view(batch, width),
                "position_ids": flat_positions.view(batch, width)}  # fmt: skip

    def validation_batches(self, rows_per_batch: int = 32):
        """The validation rows as collated batches, in order, with epoch 0's draws."""
        for start in range(0, len(self.validation_rows), rows_per_batch):
            indices = list(range(start, min(start + rows_per_batch, len(self.validation_rows))))
            yield self.collate(indices, epoch=0, corpus=self.validation_data, rows=self.validation_rows)


class MLMTask(PackedTweets):
    def __init__(self, *packing, mask_prob: float):
        """`packing`: PackedTweets' arguments; `mask_prob`: the share of tokens masked (80/10/10)."""
        super().__init__(*packing)
        tokenizer = self.tokenizer
        self.mask_prob, self.mask_id = mask_prob, tokenizer.mask_token_id
        if self.mask_id is None:
            raise ConfigError("the tokenizer needs a mask token for MLM")
        self.vocab_size = len(tokenizer)
        self.special_ids = sorted(set(tokenizer.all_special_ids))

    def wrap(self, model):
        return MaskedPositionsLM(model, self.block_diagonal)

    def collate(self, indices: list[int], epoch: int, corpus=None, rows=None) -> dict:
        packed = self.packed(indices, corpus, rows)
        input_ids, segments = packed["input_ids"], packed["segments"]
        width = input_ids.shape[1]
        special = torch.isin(input_ids, torch.tensor(self.special_ids))
        # Dynamic masking: a fresh draw each epoch, the same draw for the same (seed, epoch,
        # row) whatever the process count or batch composition.  Draws are max_length long
        # whatever the batch width, so they do not shift with the padding of the batch.
        draw, kind = torch.empty(len(indices), self.max_length), torch.empty(len(indices), self.max_length)
        random_ids = torch.empty(len(indices), self.max_length, dtype=torch.long)
        for b, row_index in enumerate(indices):
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + row_index)
            torch.rand(self.max_length, generator=generator, out=draw[b])
            torch.rand(self.max_length, generator=generator, out=kind[b])
            torch.randint(
                len(self.special_ids), self.vocab_size, (self.max_length,), generator=generator, out=random_ids[b]
            )
        draw, kind, random_ids = draw[:, :width], kind[:, :width], random_ids[:, :width]
        chosen = (draw < self.mask_prob) & ~special
        labels = torch.where(chosen, input_ids, -100)
        input_ids = torch.where(chosen & (kind < 0.8), self.mask_id, input_ids)  # 80% <mask>
        swap = chosen & (kind >= 0.8) & (kind < 0.9)  # 10% a random token, 10% unchanged
        input_ids = torch.where(swap, random_ids, input_ids)
        flat_labels = labels.reshape(-1)
        masked = torch.nonzero(flat_labels != -100, as_tuple=False).squeeze(1)
        return {
            "input_ids": input_ids,
            "segments": segments,
            "position_ids": packed["position_ids"],
            "masked_positions": masked,
            "labels": flat_labels.index_select(0, masked),
            "count": int(masked.numel()),
            "tokens": int((segments > 0).sum()),
        }

    @staticmethod
    def logits(module, batch: dict) -> torch.Tensor:
        """The vocabulary logits at the masked positions only."""
        device = next(module.parameters()).device
        names = ("input_ids", "segments", "position_ids", "masked_positions")
        return module(*(batch[name].to(device, non_blocking=True) for name in names)).float()

    def loss(self, module, batch: dict):
        logits = self.logits(module, batch)
        return F.cross_entropy(logits, batch["labels"].to(logits.device, non_blocking=True), reduction="sum"), batch[
            "count"
        ]

    def evaluate(self, module) -> dict:
        """The masked-token loss and accuracy on the validation rows (epoch 0's masks)."""
        return token_scores(self, module, "validation_masked_accuracy")


# --- evaluating a masked LM itself -----------------------------------------------------


def mask_one_word_each(encoded, rows: int, mask_id: int, rng) -> tuple[torch.Tensor, list[list[tuple]]]:
    """(input_ids, targets): one word drawn per row with `rng`, all its pieces masked; a row's
    targets are its masked (position, gold id) pairs, none for a row without words."""
    input_ids, targets = encoded["input_ids"].clone(), []
    for row in range(rows):
        word_ids = encoded.word_ids(row)
        candidates = sorted({w for w in word_ids if w is not None})
        if not candidates:
            targets.append([])
            continue
        chosen = rng.choice(candidates)
        positions = [i for i, w in enumerate(word_ids) if w == chosen]
        targets.append([(i, int(input_ids[row, i])) for i in positions])
        input_ids[row, positions] = mask_id
    return input_ids, targets


@torch.no_grad()
def masked_word_accuracy(
    model, tokenizer, texts: list[str], ks: list[int], seed: int = 0, batch_size: int = 32, max_length: int = 128
) -> dict:
    """Mask one whole word per tweet (chosen with `seed`) and predict it.

    A word is right at K when each of its pieces is among the K most likely at its
    position.  Pseudo-perplexity is exp of the mean negative log-likelihood of the
    masked pieces (Salazar et al.'s PPPL, restricted to the masked words).
    """
    import math
    import random

    rng = random.Random(seed)
    device = next(model.parameters()).device
    model.eval()
    hits = {k: 0 for k in ks}
    words = pieces = 0
    nll = 0.0
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        encoded = tokenizer(
            chunk,
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
            return_offsets_mapping=True,
        )
        input_ids, targets = mask_one_word_each(encoded, len(chunk), tokenizer.mask_token_id, rng)
        logits = model(input_ids=input_ids.to(device), attention_mask=encoded["attention_mask"].to(device)).logits
        # Only the masked positions' top-k and gold log-probabilities leave the device, not (B, T, vocab).
        chosen = [(row, i, gold) for row, target in enumerate(targets) for i, gold in target]
        if not chosen:
            continue
        rows, positions, golds = (torch.tensor(column, device=logits.device) for column in zip(*chosen))
        selected = logits[rows, positions].float()
        top = selected.topk(max(ks), dim=-1).indices.cpu()
        gold_log_probs = torch.log_softmax(selected, -1).gather(1, golds[:, None]).squeeze(1).double().cpu()
        nll -= float(gold_log_probs.sum())
        pieces += len(chosen)
        at = 0
        for target in targets:
            if not target:
                continue
            words += 1
            for k in ks:
                hits[k] += all(gold in top[at + j, :k].tolist() for j, (_, gold) in enumerate(target))
            at += len(target)
    result = {f"top{k}_accuracy": hits[k] / words if words else 0.0 for k in ks}
    result.update(
        pseudo_perplexity=math.exp(nll / pieces) if pieces else float("nan"), masked_words=words, masked_pieces=pieces
    )
    return result
