"""Continued pretraining: load a model and move it to a new (or extended) vocabulary.

Rows of pieces both vocabularies share are copied exactly (embedding and output
bias).  A new piece's row starts as the mean of the base model's rows for the pieces
the base tokenizer splits it into, which keeps it near what the model already knows;
`random` gives E-MBERT's random initialisation instead.  With a `train-bpe --extend`
tokenizer every old id is unchanged, so old rows simply stay where they are.

The masked-LM classes drop the base model's pooler (BERT's dense+tanh over [CLS]),
which sequence classification fine-tunes from; it is carried along, frozen, so that
the saved model gives fine-tuning the same pooler the base model would.
"""

from __future__ import annotations

import torch

from tweetkit.errors import ConfigError, log_to_stderr


def load_for_continued_pretraining(name_or_path: str, tokenizer, new_token_init: str, seed: int, log=log_to_stderr):
    """(model, what is new): the MLM model on `tokenizer`'s vocabulary, and {"head": the
    parameter names the checkpoint lacked, "new_ids": the rows of pieces the base lacks,
    "tied": whether the MLM decoder is the input embedding matrix}."""
    from transformers import AutoModelForMaskedLM

    from tweetkit.modeling import load_pretrained, load_tokenizer

    torch.manual_seed(seed)  # the heads a checkpoint lacks are initialised reproducibly
    model, info = load_pretrained(
        AutoModelForMaskedLM, name_or_path, output_loading_info=True, attn_implementation="sdpa"
    )
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        log(f"initialised what {name_or_path} lacks: {', '.join(missing)}")
    base_tokenizer = load_tokenizer(name_or_path)
    report = migrate_vocabulary(model, base_tokenizer, tokenizer, new_token_init)
    if keep_base_pooler(model, name_or_path):
        log(f"kept {name_or_path}'s pooler (frozen) for fine-tuning")
    if report["new_pieces"]:
        log(
            f"vocabulary: {report['shared_pieces']:,} of {report['vocab_size']:,} pieces shared with the base "
            f"({report['shared_share']:.1%}); {report['new_pieces']:,} new rows initialised ({new_token_init})"
        )
    tied = tie_decoder(model, missing)
    log(
        "MLM decoder tied to the input embeddings (as BERT's): of the head, only the transform and the bias are new"
        if tied
        else "MLM decoder kept untied, as saved in the checkpoint"
    )
    names = {name for name, _ in model.named_parameters()}
    return model, {"head": [k for k in missing if k in names], "new_ids": report["new_ids"], "tied": tied}


def decoder_is_tied(model) -> bool:
    output = model.get_output_embeddings()
    return output is not None and output.weight is model.get_input_embeddings().weight


def tie_decoder(model, missing: list[str]) -> bool:
    """Tie a decoder the checkpoint did not have to the input embeddings (a random vocabulary
    projection would be a second, untrained copy of them); a decoder it saved untied stays."""
    if decoder_is_tied(model):
        return True
    output = model.get_output_embeddings()
    if output is None or not any(key.endswith("decoder.weight") for key in missing):
        return False
    output.weight = model.get_input_embeddings().weight
    model.config.tie_word_embeddings = True
    return True


class HeadWarmup:
    """LP-FT in one run: for the first `steps` optimizer steps only the new MLM head (and the
    rows of new vocabulary pieces) train; then everything that was trainable before.

    A function of the step, so a resumed run is in the same phase as the straight run.  The
    shared embedding matrix (the tied decoder) trains only in its new rows: their gradient
    is kept, the old rows' is zeroed, and the old rows are put back after each step (weight
    decay would otherwise move them).  Parameters without a gradient are skipped by AdamW,
    so the frozen ones keep no optimizer state until they start training."""

    def __init__(self, model, steps: int, head: list[str], new_ids: list[int]):
        from tweetkit.errors import ConfigError

        self.steps = steps
        self.trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.embeddings = model.get_input_embeddings().weight
        self.new_rows = torch.zeros(self.embeddings.shape[0], dtype=torch.bool)
        self.new_rows[list(new_ids)] = True
        self.warm = {name for name in head if name in self.trainable}
        if self.new_rows.any() and self.embeddings.requires_grad:
            self.warm |= {name for name, p in self.trainable.items() if p is self.embeddings}
        if not self.warm:
            raise ConfigError(
                "--head-warmup-steps: the model has no new MLM head and no new vocabulary rows to warm up"
            )
        self.active: bool | None = None
        self.saved_rows = None
        self.embeddings.register_hook(self._mask_gradient)

    def parameters_warmed(self) -> int:
        return sum(self.trainable[name].numel() for name in self.warm)

    def _mask_gradient(self, grad):
        if not self.active:
            return grad
        return grad * self.new_rows.to(grad.device)[:, None]

    def before_step(self, step: int) -> None:
        warm = step < self.steps
        if warm != self.active:
            for name, param in self.trainable.items():
                param.requires_grad_(not warm or name in self.warm)
            self.active = warm
            self.saved_rows = None
        if warm and self.saved_rows is None and self.new_rows.any():
            self.saved_rows = self.embeddings.detach()[~self.new_rows.to(self.embeddings.device)].clone()

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        if self.active and self.saved_rows is not None:
            self.embeddings[~self.new_rows.to(self.embeddings.device)] = self.saved_rows


def keep_base_pooler(model, name_or_path: str) -> bool:
    """Attach the checkpoint's pooler to a masked-LM model built without one; True if done.

    Frozen: the MLM loss never reaches it, and a parameter without gradient would stall DDP."""
    from transformers import AutoModel

    base = model.base_model
    if getattr(base, "pooler", "absent") is not None:  # the architecture has none, or it is already there
        return False
    from tweetkit.modeling import load_pretrained

    rng = torch.get_rng_state()  # loading must not shift the seeded initialisation of what follows
    try:
        full, info = load_pretrained(AutoModel, name_or_path, output_loading_info=True)
    finally:
        torch.set_rng_state(rng)
    pooler = getattr(full, "pooler", None)
    if pooler is None or any("pooler" in key for key in info.get("missing_keys", ())):
        return False  # the checkpoint has no pooler weights: fine-tuning starts a fresh one either way
    base.pooler = pooler.requires_grad_(False)
    return True


@torch.no_grad()
def migrate_vocabulary(model, old_tokenizer, new_tokenizer, new_token_init: str = "mean") -> dict:
    """Resize the model to `new_tokenizer`'s vocabulary, keeping every shared row exactly."""
    old_vocab, new_vocab = old_tokenizer.get_vocab(), new_tokenizer.get_vocab()
    if model.get_input_embeddings().weight.shape[0] < len(old_vocab):
        raise ConfigError("the base tokenizer has more pieces than the model has embedding rows")
    shared = [piece for piece in new_vocab if piece in old_vocab]
    report = {
        "vocab_size": len(new_vocab),
        "shared_pieces": len(shared),
        "shared_share": len(shared) / len(new_vocab),
        "new_pieces": len(new_vocab) - len(shared),
        "new_ids": sorted(index for piece, index in new_vocab.items() if piece not in old_vocab),
    }
    if (
        all(old_vocab.get(piece) == index for piece, index in new_vocab.items())
        and len(new_vocab) == model.get_input_embeddings().weight.shape[0]
    ):
        return report
    old_embeddings = model.get_input_embeddings().weight.detach().clone()
    output = model.get_output_embeddings()
    old_bias = getattr(output, "bias", None)
    old_bias = old_bias.detach().clone() if old_bias is not None else None
    std = getattr(model.config, "initializer_range", 0.02)

    embeddings = torch.empty(len(new_vocab), old_embeddings.shape[1]).normal_(0.0, std)
    bias = torch.zeros(len(new_vocab)) if old_bias is not None else None
    for piece, index in new_vocab.items():
        old_index = old_vocab.get(piece)
        if old_index is not None:
            embeddings[index] = old_embeddings[old_index]
            if bias is not None:
                bias[index] = old_bias[old_index]
        elif new_token_init == "mean":
            surface = new_tokenizer.convert_tokens_to_string([piece]).strip()
            parts = old_tokenizer(surface, add_special_tokens=False)["input_ids"] if surface else []
            if parts:
                embeddings[index] = old_embeddings[parts].mean(0)
                if bias is not None:
                    bias[index] = old_bias[parts].mean()
    model.resize_token_embeddings(len(new_vocab))
    model.get_input_embeddings().weight.copy_(embeddings)
    if bias is not None:
        model.get_output_embeddings().bias.copy_(bias)
    model.tie_weights()
    model.config.vocab_size = len(new_vocab)
    for name in ("bos_token_id", "eos_token_id"):  # pad_token_id stays: RoBERTa positions count from it
        value = getattr(new_tokenizer, name, None)
        if value is not None:
            setattr(model.config, name, value)
    return report
