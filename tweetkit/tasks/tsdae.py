"""TSDAE (Wang, Reimers & Gurevych 2021) on packed rows of tweets: the denoising
auto-encoder sentence-transformers recommends for adapting a sentence encoder to a domain.

A share of each tweet's tokens (DELETION, the paper's ratio) is deleted (drawn from (seed, epoch, row) like MLM's
masking, <s> and </s> kept, and at least one token of each tweet); the damaged tweets are
encoded on packed rows (block-diagonal attention, positions restarting per tweet) and each
is mean-pooled to one vector.  A decoder then reconstructs the original tweet from that
vector alone, as in the paper: the encoder's architecture as a decoder (causal
self-attention, cross-attention to the pooled vector only), initialised from the encoder's
weights as sentence-transformers does (the cross-attention is new), its word embeddings and
output projection tied to the encoder's input embeddings.  The loss is the cross-entropy of
every target token.  The decoder runs one tweet per row (padded): it reads one vector, so
there is nothing to pack across tweets.

The decoder trains with the encoder and is kept in checkpoints (for --resume), but not in
the model directory pretrain writes, which stays a plain masked-LM model.
"""

from __future__ import annotations

import copy
import os

import torch
import torch.nn.functional as F

from tweetkit.errors import ConfigError
from tweetkit.tasks.contrastive import encoder_without_head, number_tweets, pool_tweets
from tweetkit.tasks.mlm import PackedTweets, packed_attention, split_mlm_model, token_scores

DELETION = 0.6  # the paper's deletion ratio, its best


def build_decoder(model, seed: int):
    """The encoder's architecture as a decoder with cross-attention, its weights copied from
    the MLM model `model` (the cross-attention initialised from `seed`)."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    config.is_decoder, config.add_cross_attention, config.tie_word_embeddings = True, True, True
    config.architectures = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            decoder = AutoModelForCausalLM.from_config(config)
        except ValueError as exc:
            raise ConfigError(f"--objective tsdae: no decoder for {config.model_type} ({exc})") from None
    copied = decoder.load_state_dict(model.state_dict(), strict=False)
    others = [key for key in copied.missing_keys if "crossattention" not in key and "decoder.weight" not in key]
    if others:
        raise ConfigError(f"--objective tsdae: the decoder does not take the encoder's weights ({others[0]}, ...)")
    return decoder


class TSDAEModel(torch.nn.Module):
    """The MLM model (the encoder pretrain saves) and the training-only decoder, as the one
    module the training loop optimises and checkpoints."""

    def __init__(self, model, decoder):
        super().__init__()
        self.mlm, self.decoder = model, decoder
        self.config = model.config
        self.tie_weights()

    def tie_weights(self, *args, **kwargs):
        self.mlm.tie_weights()
        embeddings = self.mlm.get_input_embeddings().weight
        self.decoder.get_input_embeddings().weight = embeddings
        self.decoder.get_output_embeddings().weight = embeddings

    def save_pretrained(self, directory: str, safe_serialization: bool = True) -> None:
        """A checkpoint's weights, encoder and decoder, each shared tensor once (data only)."""
        from safetensors.torch import save_model

        os.makedirs(directory, exist_ok=True)
        save_model(self, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})


class TSDAEModule(torch.nn.Module):
    """Encode the damaged packed rows, pool each tweet, decode the originals; the vocabulary
    projection only at target tokens.  A module of its own so DDP wraps it."""

    def __init__(self, model: TSDAEModel):
        super().__init__()
        self.model = model
        self.encoder = encoder_without_head(model.mlm)
        self.decoder, self.decoder_head = split_mlm_model(model.decoder)

    def forward(self, input_ids, segments, position_ids, token_positions, tweet_index, tweets, decoder_ids,
                decoder_positions, decoder_mask, label_positions):  # fmt: skip
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=packed_attention(segments), position_ids=position_ids
        ).last_hidden_state
        pooled = pool_tweets(hidden, token_positions, tweet_index, tweets)
        states = self.decoder(
            input_ids=decoder_ids,
            attention_mask=decoder_mask,
            position_ids=decoder_positions,
            encoder_hidden_states=pooled[:, None, :].to(hidden.dtype),
            use_cache=False,
        ).last_hidden_state
        selected = states.reshape(-1, states.shape[-1]).index_select(0, label_positions)
        return self.decoder_head(selected)


class TSDAETask(PackedTweets):
    def __init__(self, *packing, deletion: float = DELETION):
        """`packing`: PackedTweets' arguments; `deletion`: the share of each tweet's tokens deleted."""
        super().__init__(*packing)
        self.deletion = deletion

    def wrap(self, model):
        return TSDAEModule(model)

    def collate(self, indices: list[int], epoch: int, corpus=None, rows=None) -> dict:
        packed = self.packed(indices, corpus, rows)
        damaged = self.damage(packed, self.kept(packed, indices, epoch))
        targets = self.targets(packed)
        count = int(targets["labels"].numel())
        tokens = int((packed["segments"] > 0).sum())  # the corpus tokens read, as MLM counts them
        return {**damaged, **number_tweets(damaged["segments"]), **targets, "count": count, "tokens": tokens}

    def kept(self, packed: dict, indices: list[int], epoch: int) -> torch.Tensor:
        """Which tokens of the packed rows survive: <s> and </s>, and each body token with
        probability 1 - deletion; a tweet that would lose them all keeps its most likely one.
        Drawn from (seed, epoch, row), max_length draws a row, like MLM's masking."""
        segments = packed["segments"]
        batch, width = segments.shape
        draws = torch.empty(batch, self.max_length)
        for b, row_index in enumerate(indices):
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + row_index)
            torch.rand(self.max_length, generator=generator, out=draws[b])
        draws = draws[:, :width]
        place = packed["position_ids"] - self.position_offset
        last = segments != F.pad(segments[:, 1:], (0, 1))  # a tweet's </s>: the next token is another's
        body = (segments > 0) & (place > 0) & ~last
        survives = body & (draws >= self.deletion)
        slot = (torch.arange(batch)[:, None] * width + segments).reshape(-1)
        flat_body, flat_draws = body.reshape(-1), draws.reshape(-1)
        best = torch.full((batch * width + width,), -1.0).scatter_reduce(
            0, slot[flat_body], flat_draws[flat_body], "amax"
        )
        left = torch.zeros(batch * width + width).index_add_(0, slot, survives.reshape(-1).float())
        rescued = body & (left[slot] == 0).view(batch, width) & (draws == best[slot].view(batch, width))
        return (segments > 0) & (~body | survives | rescued)

    def damage(self, packed: dict, keep: torch.Tensor) -> dict:
        """The packed rows with only the `keep` tokens, moved left; positions restart per tweet."""
        segments = packed["segments"]
        batch = segments.shape[0]
        column = keep.cumsum(1) - 1
        width = int(keep.sum(1).max())
        rows, columns = torch.nonzero(keep, as_tuple=True)
        destination = rows * width + column[rows, columns]
        starts = packed["position_ids"][rows, columns] == self.position_offset  # each tweet's <s>
        first = torch.zeros(batch * segments.shape[1] + 1, dtype=torch.long)
        tweet = rows * segments.shape[1] + segments[rows, columns]
        first[tweet[starts]] = destination[starts]
        ids = torch.full((batch * width,), self.pad, dtype=torch.long)
        new_segments = torch.zeros(batch * width, dtype=torch.long)
        positions = torch.full((batch * width,), self.position_offset, dtype=torch.long)
        ids[destination] = packed["input_ids"][rows, columns]
        new_segments[destination] = segments[rows, columns]
        positions[destination] = destination - first[tweet] + self.position_offset
        return {"input_ids": ids.view(batch, width), "segments": new_segments.view(batch, width),
                "position_ids": positions.view(batch, width)}  # fmt: skip

    def targets(self, packed: dict) -> dict:
        """The original tweets, one a row: the decoder reads <s> x and predicts x </s>."""
        numbered = number_tweets(packed["segments"])
        positions, tweet_index, tweets = numbered["token_positions"], numbered["tweet_index"], numbered["tweets"]
        place = packed["position_ids"].reshape(-1)[positions] - self.position_offset
        lengths = torch.bincount(tweet_index, minlength=tweets)
        width = int(lengths.max())
        full = torch.full((tweets, width), self.pad, dtype=torch.long)
        full[tweet_index, place] = packed["input_ids"].reshape(-1)[positions]
        mask = torch.arange(width - 1)[None, :] < (lengths - 1)[:, None]
        label_positions = torch.nonzero(mask.reshape(-1), as_tuple=False).squeeze(1)
        return {
            "decoder_ids": full[:, :-1],
            "decoder_positions": (torch.arange(width - 1) + self.position_offset).expand(tweets, -1).contiguous(),
            "decoder_mask": mask.long(),
            "label_positions": label_positions,
            "labels": full[:, 1:].reshape(-1)[label_positions],
        }

    NAMES = ("input_ids", "segments", "position_ids", "token_positions", "tweet_index", "tweets", "decoder_ids",
             "decoder_positions", "decoder_mask", "label_positions")  # fmt: skip

    def logits(self, module, batch: dict) -> torch.Tensor:
        """The vocabulary logits at the target tokens."""
        device = next(module.parameters()).device
        move = lambda value: value.to(device, non_blocking=True) if torch.is_tensor(value) else value  # noqa: E731
        return module(*(move(batch[name]) for name in self.NAMES)).float()

    def loss(self, module, batch: dict):
        logits = self.logits(module, batch)
        labels = batch["labels"].to(logits.device, non_blocking=True)
        return F.cross_entropy(logits, labels, reduction="sum"), batch["count"]

    def evaluate(self, module) -> dict:
        """The reconstruction loss and token accuracy on the validation tweets (epoch 0's deletions)."""
        return token_scores(self, module, "validation_reconstruction_accuracy")
