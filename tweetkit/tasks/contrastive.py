"""Unsupervised SimCSE (Gao et al. 2021) on packed rows of tweets: continued pretraining
on a sentence encoder's own objective.

A sentence encoder such as all-MiniLM-L6-v2 was trained contrastively and ships no MLM
head, so masked-LM adaptation pulls it off its objective (AdaSent, 2023).  Here every
tweet is encoded twice, each time under its own dropout; the two mean-pooled embeddings
(mean over the tweet's tokens, <s> and </s> included, as sentence-transformers pools
MiniLM) are a positive pair, and the other tweets of the micro-batch are the negatives:
InfoNCE over cosine similarities / temperature.  Rows are packed exactly as for MLM
(block-diagonal attention, positions restarting per tweet), so a packed tweet's
embedding is the one it would have alone.

In-batch negatives are the tweets of one micro-batch on one process: unlike MLM's loss,
this one depends on --micro-batch-size and the process count (it is still a function of
the seed for a given setting, and resumes exactly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tweetkit.tasks.mlm import PackedTweets, packed_attention, split_mlm_model


class TweetEmbedder(torch.nn.Module):
    """Mean-pooled embeddings of the tweets of packed rows, every row encoded twice.

    One forward over the rows stacked on themselves: the two copies draw different
    dropout masks, which is all unsupervised SimCSE needs.  A module of its own so DDP
    wraps it (DDP syncs gradients through forward)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.encoder = encoder_without_head(model)

    def forward(self, input_ids, segments, position_ids, token_positions, tweet_index, tweets):
        twice = lambda x: torch.cat([x, x])  # noqa: E731
        attention = packed_attention(twice(segments))
        hidden = self.encoder(
            input_ids=twice(input_ids), attention_mask=attention, position_ids=twice(position_ids)
        ).last_hidden_state
        # the second copy's tokens lie one batch further on, its tweets numbered after the first's
        positions = torch.cat([token_positions, token_positions + input_ids.numel()])
        return pool_tweets(hidden, positions, torch.cat([tweet_index, tweet_index + tweets]), 2 * tweets)


def encoder_without_head(model):
    """The encoder of an MLM model whose head plays no part in the loss (SimCSE, TSDAE): the
    head frozen, or DDP would wait for its gradients forever.  Its output projection is tied
    to the encoder's embeddings, which train."""
    encoder, head = split_mlm_model(model)
    shared = {id(p) for p in encoder.parameters()}
    for param in head.parameters():
        if id(param) not in shared:
            param.requires_grad_(False)
    return encoder


def number_tweets(segments: torch.Tensor) -> dict:
    """The tweets of packed rows numbered 0..n-1 in row order: token_positions (the flat
    positions of the real tokens), tweet_index (each one's tweet) and tweets (n)."""
    per_row = segments.max(dim=1).values
    first = torch.cumsum(per_row, 0) - per_row  # row b's segment s is tweet first[b] + s - 1
    flat_segments = segments.reshape(-1)
    token_positions = torch.nonzero(flat_segments > 0, as_tuple=False).squeeze(1)
    rows_of_tokens = token_positions // segments.shape[1]
    tweet_index = first[rows_of_tokens] + flat_segments[token_positions] - 1
    return {"token_positions": token_positions, "tweet_index": tweet_index, "tweets": int(per_row.sum())}


def pool_tweets(hidden: torch.Tensor, token_positions, tweet_index, tweets: int) -> torch.Tensor:
    """(tweets, hidden) mean of each tweet's token states, <s> and </s> included (as
    sentence-transformers pools MiniLM), in fp32."""
    flat = hidden.reshape(-1, hidden.shape[-1]).float()
    sums = flat.new_zeros(tweets, flat.shape[-1]).index_add_(0, tweet_index, flat.index_select(0, token_positions))
    counts = torch.bincount(tweet_index, minlength=tweets).clamp(min=1).to(sums.dtype)
    return sums / counts[:, None]


class SimCSETask(PackedTweets):
    def __init__(self, *packing, temperature: float = 0.05):
        """`packing`: PackedTweets' arguments; `temperature`: of the softmax over cosine similarities."""
        super().__init__(*packing)
        self.temperature = temperature

    def wrap(self, model):
        return TweetEmbedder(model)

    def collate(self, indices: list[int], epoch: int, corpus=None, rows=None) -> dict:
        packed = self.packed(indices, corpus, rows)
        numbered = number_tweets(packed["segments"])
        tweets = numbered["tweets"]
        return {**packed, **numbered, "count": tweets, "tokens": int(numbered["token_positions"].numel())}

    def scores(self, module, batch: dict) -> torch.Tensor:
        """(n, n) cosine similarities / temperature between the two views; the diagonal pairs."""
        device = next(module.parameters()).device
        names = ("input_ids", "segments", "position_ids", "token_positions", "tweet_index")
        embeddings = module(*(batch[name].to(device, non_blocking=True) for name in names), batch["tweets"])
        first, second = F.normalize(embeddings, dim=-1).chunk(2)
        return first @ second.T / self.temperature

    def loss(self, module, batch: dict):
        scores = self.scores(module, batch)
        targets = torch.arange(scores.shape[0], device=scores.device)
        return F.cross_entropy(scores, targets, reduction="sum"), batch["count"]

    def evaluate(self, module) -> dict:
        """The contrastive loss on the validation tweets, in batches of 32 rows, under
        dropout drawn from the seed (the same draws at every evaluation, so the figures of
        two checkpoints compare), and how often a tweet's other view is its nearest."""
        if not self.validation_rows:
            return {}
        was_training = module.training
        module.train()  # the two views differ only by dropout
        torch.manual_seed(self.seed)  # the training loop reseeds dropout before each step
        total, count, correct = 0.0, 0, 0
        try:
            for batch in self.validation_batches():
                scores = self.scores(module, batch)
                targets = torch.arange(scores.shape[0], device=scores.device)
                total += float(F.cross_entropy(scores, targets, reduction="sum"))
                correct += int((scores.argmax(-1) == targets).sum())
                count += batch["count"]
        finally:
            module.train(was_training)
        return {
            "validation_loss": round(total / max(count, 1), 6),
            "validation_pair_accuracy": round(correct / max(count, 1), 6),
        }
