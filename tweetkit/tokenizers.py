"""Loading tokenizers the way every command expects them: fast, from a directory or a name."""

from __future__ import annotations

from tweetkit.errors import ConfigError


def load_tokenizer(name_or_path: str):
    """A fast (Rust) HF tokenizer; a clear error when there is none."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load tokenizer {name_or_path}: {str(exc).splitlines()[0]}") from None
    if not tokenizer.is_fast:
        raise ConfigError(f"{name_or_path}: no fast tokenizer (tokenizer.json) available")
    return tokenizer
