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
    from transformers import AutoModelForMaskedLM

    from tweetkit.modeling import load_pretrained, load_tokenizer

    torch.manual_seed(seed)  # the heads a checkpoint lacks are initialised reproducibly
    model, info = load_pretrained(
        AutoModelForMaskedLM, name_or_path, output_loading_info=True, attn_implementation="sdpa"
    )
    if info.get("missing_keys"):
        log(f"initialised what {name_or_path} lacks: {', '.join(sorted(info['missing_keys']))}")
    base_tokenizer = load_tokenizer(name_or_path)
    report = migrate_vocabulary(model, base_tokenizer, tokenizer, new_token_init)
    if keep_base_pooler(model, name_or_path):
        log(f"kept {name_or_path}'s pooler (frozen) for fine-tuning")
    if report["new_pieces"]:
        log(
            f"vocabulary: {report['shared_pieces']:,} of {report['vocab_size']:,} pieces shared with the base "
            f"({report['shared_share']:.1%}); {report['new_pieces']:,} new rows initialised ({new_token_init})"
        )
    return model


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
