"""Subword tokenizers as fast Hugging Face tokenizers: load, train, extend, compare.

Every tokenizer tweetkit writes is a `tokenizer.json` pipeline (Metaspace "▁" words,
a BPE or Unigram model, RoBERTa's `<s> X </s>` template) that
`transformers.AutoTokenizer` loads as a fast tokenizer, whichever library trained it.

Placeholders (`@USER`, `HTTPURL`) and demojized emoji names (`:red_heart:`) are made
atomic by adding them as whole-word pieces ("▁@USER"): BPE is told to take a word
that is in the vocabulary as it is (`ignore_merges`), and Unigram gives them the
highest score, so they never split and `decode(encode(x)) == x` still holds.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field

from tweetkit.errors import ConfigError
from tweetkit.metrics import percentile

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's, ids 0..4
PLACEHOLDERS = ["@USER", "HTTPURL"]
WORD_MARK = "▁"


def known_emoji_names() -> set[str]:
    """Names `normalize` can write: the installed emoji package's and emoji 0.6.0's."""
    import emoji

    from tweetkit.text.normalize import bertweet_emoji_table

    names = {data["en"] for data in emoji.EMOJI_DATA.values() if "en" in data}
    names.update(name for name in bertweet_emoji_table().values() if name)  # its variation selector maps to ""
    return names


@dataclass
class Corpus:
    """The training sample plus what atomic pieces it needs."""

    texts: list[str] = field(default_factory=list)
    seen: int = 0
    emoji_names: Counter = field(default_factory=Counter)


def sample_corpus(texts, max_sentences: int | None, seed: int = 0) -> Corpus:
    """Reservoir-sample up to max_sentences texts (all when None), counting emoji names."""
    corpus, rng = Corpus(), random.Random(seed)
    names = known_emoji_names()
    for text in texts:
        corpus.seen += 1
        for token in text.split():
            if token[0] == ":" and token in names:
                corpus.emoji_names[token] += 1
        if max_sentences is None or len(corpus.texts) < max_sentences:
            corpus.texts.append(text)
        else:
            slot = rng.randrange(corpus.seen)
            if slot < max_sentences:
                corpus.texts[slot] = text
    return corpus


# --- training --------------------------------------------------------------------------


def _metaspace_pipeline(model):
    from tokenizers import Tokenizer, decoders, pre_tokenizers

    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=WORD_MARK, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=WORD_MARK, prepend_scheme="always")
    return tokenizer


def train_hf(texts: list[str], algorithm: str, vocab_size: int):
    """Train with the `tokenizers` library (Rust, multi-threaded)."""
    from tokenizers import models, trainers

    if algorithm == "bpe":
        tokenizer = _metaspace_pipeline(models.BPE(unk_token="<unk>"))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            min_frequency=2,
            limit_alphabet=1000,
            show_progress=False,
        )
    else:
        tokenizer = _metaspace_pipeline(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token="<unk>", show_progress=False
        )
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    return tokenizer


def train_sentencepiece(texts: list[str], algorithm: str, vocab_size: int):
    """Train with Google's sentencepiece, then express the model as a tokenizers pipeline."""
    import io

    import sentencepiece as spm
    from tokenizers import models

    buffer = io.BytesIO()
    try:
        _train_sentencepiece(spm, buffer, texts, algorithm, vocab_size)
    except RuntimeError as exc:
        limit = re.search(r"value <= (\d+)", str(exc))
        if limit:
            raise ConfigError(
                f"--vocab-size: this corpus fills at most {int(limit.group(1)):,} pieces; "
                "ask for fewer or give more text"
            ) from None
        raise ConfigError(f"sentencepiece: {str(exc).splitlines()[0]}") from None
    processor = spm.SentencePieceProcessor(model_proto=buffer.getvalue())
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    if algorithm == "unigram":
        return _metaspace_pipeline(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    return _metaspace_pipeline(models.BPE(vocab, merges_from_vocab(vocab), unk_token="<unk>"))


def _train_sentencepiece(spm, buffer, texts: list[str], algorithm: str, vocab_size: int) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buffer,
        model_type=algorithm,
        vocab_size=vocab_size,
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        control_symbols=["<mask>"],
        bos_piece="<s>",
        eos_piece="</s>",
        pad_piece="<pad>",
        unk_piece="<unk>",
        character_coverage=0.9999,
        normalization_rule_name="identity",  # tweets come normalised; keep them as they are
        input_sentence_size=0,
        minloglevel=2,
        num_threads=2,
    )


def merges_from_vocab(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges that rebuild each piece from two pieces, ranked by the piece's id
    (sentencepiece stores BPE pieces in the order it learned them)."""
    merges = []
    for piece, rank in vocab.items():
        splits = [(piece[:i], piece[i:]) for i in range(1, len(piece)) if piece[:i] in vocab and piece[i:] in vocab]
        merges.extend((rank, vocab[left], vocab[right], left, right) for left, right in splits)
    merges.sort()
    return [(left, right) for *_, left, right in merges]


def train_with_whole_words(train, texts: list[str], algorithm: str, vocab_size: int, words: list[str], special: int):
    """Train (with `train`, a backend's function) so that the vocabulary *with* the
    whole-word pieces has `vocab_size` pieces: words the trainer learned by itself
    count once, so a short vocabulary is trained again with room for them."""
    size = max(special + 1, vocab_size - len(words))
    result = add_whole_word_pieces(train(texts, algorithm, size), words)
    for _ in range(2):
        short = vocab_size - result.get_vocab_size()
        if short <= 0:
            break
        try:
            result = add_whole_word_pieces(train(texts, algorithm, size + short), words)
        except ConfigError:  # the corpus cannot fill more: keep what it gave
            break
        size += short
    return result


def add_whole_word_pieces(tokenizer, words: list[str]):
    """Return a copy of a Metaspace tokenizer where each word is one piece ("▁word")."""
    from tokenizers import Tokenizer

    spec = json.loads(tokenizer.to_str())
    model = spec["model"]
    pieces = [WORD_MARK + w for w in words]
    if model["type"] == "BPE":
        vocab = model["vocab"]
        for piece in pieces:
            vocab.setdefault(piece, len(vocab))
        model["ignore_merges"] = True  # a word found whole in the vocabulary is one piece
    elif model["type"] == "Unigram":
        present = {piece for piece, _ in model["vocab"]}
        best = max(score for _, score in model["vocab"]) if model["vocab"] else 0.0
        # The highest score: no segmentation into smaller pieces can beat it.
        model["vocab"].extend([piece, best] for piece in pieces if piece not in present)
    else:
        raise ConfigError(f"cannot add whole-word pieces to a {model['type']} model")
    return Tokenizer.from_str(json.dumps(spec))


def with_roberta_template(tokenizer):
    from tokenizers import processors

    ids = {token: tokenizer.token_to_id(token) for token in ("<s>", "</s>")}
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=list(ids.items()),
    )
    return tokenizer


def save_fast_tokenizer(tokenizer, directory: str, model_max_length: int = 128) -> None:
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=model_max_length,
    )
    wrapped.save_pretrained(directory)


# --- measuring -------------------------------------------------------------------------


def unpadded_backend(tokenizer):
    """A copy of the Rust tokenizer with padding and truncation off.

    Some tokenizer.json files switch them on (the packaged MiniLM pads every text to
    128 ids): `transformers` overrides that on each call, but a direct `encode_batch`
    on the backend would get every tweet padded with [PAD] pieces."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(getattr(tokenizer, "backend_tokenizer", tokenizer).to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


def pieces_per_tweet(tokenizer, texts: list[str], limit: int = 100_000) -> dict:
    """Pieces per tweet (no special tokens) and the share of unknown pieces."""
    backend = unpadded_backend(tokenizer)
    sample = texts[:limit]
    encodings = backend.encode_batch(sample, add_special_tokens=False)
    lengths = sorted(len(e.ids) for e in encodings)
    unk_id = backend.token_to_id("<unk>")
    if unk_id is None and hasattr(tokenizer, "unk_token_id"):
        unk_id = tokenizer.unk_token_id
    unknown = sum(e.ids.count(unk_id) for e in encodings) if unk_id is not None else 0
    total = sum(lengths)
    return {
        "tweets_measured": len(sample),
        "pieces_per_tweet_mean": round(total / len(lengths), 3) if lengths else 0.0,
        "pieces_per_tweet_p99.9": percentile(lengths, 99.9),  # nearest rank, as `stats`
        "unknown_share": round(unknown / total, 6) if total else 0.0,
    }


def vocabulary_overlap(first, second) -> dict:
    """Pieces two tokenizers share (the overlap BERT for Japanese Twitter reports against its base)."""
    a, b = set(first.get_vocab()), set(second.get_vocab())
    shared = len(a & b)
    return {
        "vocab_size": len(a),
        "other_vocab_size": len(b),
        "shared_pieces": shared,
        "shared_share_of_this": round(shared / len(a), 4),
        "shared_share_of_other": round(shared / len(b), 4),
    }


# --- extending a base vocabulary (E-MBERT's EXTEND) ----------------------------------------


def _learner_like(spec: dict, specials: list[str], target: int):
    """(tokenizer, trainer) of the same model type and settings as the tokenizer.json `spec`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    kind, model = spec["model"]["type"], spec["model"]
    if kind == "BPE":
        byte_level = "ByteLevel" in json.dumps(spec.get("pre_tokenizer"))
        trainer = trainers.BpeTrainer(
            vocab_size=target,
            special_tokens=specials,
            min_frequency=2,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else [],
            continuing_subword_prefix=model.get("continuing_subword_prefix") or "",
            end_of_word_suffix=model.get("end_of_word_suffix") or "",
        )
        return Tokenizer(models.BPE(unk_token=model.get("unk_token"))), trainer
    if kind == "Unigram":
        return Tokenizer(models.Unigram()), trainers.UnigramTrainer(
            vocab_size=target, special_tokens=specials, show_progress=False
        )
    if kind == "WordPiece":
        prefix = model.get("continuing_subword_prefix", "##")
        learner = Tokenizer(
            models.WordPiece(unk_token=model.get("unk_token", "[UNK]"), continuing_subword_prefix=prefix)
        )
        return learner, trainers.WordPieceTrainer(
            vocab_size=target, special_tokens=specials, continuing_subword_prefix=prefix, show_progress=False
        )
    raise ConfigError(f"--extend supports BPE, Unigram and WordPiece tokenizers, not {kind}")


def extend_tokenizer(base, texts: list[str], new_pieces: int):
    """Train pieces on `texts` in BASE's own pipeline and append the ones BASE lacks.

    Every BASE id keeps its index.  Supported BASE models: BPE (byte-level like RoBERTa,
    or Metaspace/sentencepiece-style), Unigram (sentencepiece, XLM-R) and WordPiece (BERT).
    Returns (backend tokenizer, list of added pieces).
    """
    from tokenizers import Tokenizer

    backend = base.backend_tokenizer
    spec = json.loads(backend.to_str())
    specials = list(base.all_special_tokens)
    # Ask for more than needed: many learned pieces overlap with BASE.
    learner, trainer = _learner_like(spec, specials, len(base.get_vocab()) + new_pieces)
    learner.normalizer = backend.normalizer
    learner.pre_tokenizer = backend.pre_tokenizer
    learner.train_from_iterator(texts, trainer, length=len(texts))
    added = _append_pieces(spec["model"], json.loads(learner.to_str())["model"], specials, new_pieces)
    return Tokenizer.from_str(json.dumps(spec)), added


def _append_pieces(model: dict, learned: dict, specials: list[str], new_pieces: int) -> list[str]:
    """Add up to `new_pieces` learned pieces BASE's `model` lacks, after its own; return them."""
    added: list[str] = []
    if model["type"] == "Unigram":
        present = {piece for piece, _ in model["vocab"]}
        for piece, score in learned["vocab"]:
            if piece not in present and piece not in specials and len(added) < new_pieces:
                model["vocab"].append([piece, score])
                present.add(piece)
                added.append(piece)
        return added
    vocab = model["vocab"]
    for piece, _ in sorted(learned["vocab"].items(), key=lambda item: item[1]):
        if piece not in vocab and piece not in specials and len(added) < new_pieces:
            vocab[piece] = len(vocab)
            added.append(piece)
    if model["type"] == "BPE":
        # New merges go after BASE's, so BASE segmentations keep priority; a merge is
        # kept when its result is a piece we added and its parts exist.
        as_pair = lambda merge: merge.split(" ", 1) if isinstance(merge, str) else list(merge)  # noqa: E731
        model["merges"] = [as_pair(m) for m in model["merges"]]
        new = set(added)
        for left, right in map(as_pair, learned["merges"]):
            if left + right in new and left in vocab and right in vocab:
                model["merges"].append([left, right])
    return added


def save_extended(base, backend, directory: str) -> None:
    """Save BASE's configuration with the extended pipeline as its tokenizer.json."""
    import os

    base.save_pretrained(directory)
    # Slow-tokenizer files would still hold the old vocabulary: drop them, so that
    # nothing can load the tokenizer without the added pieces.
    for name in ("vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            os.remove(path)
    backend.save(os.path.join(directory, "tokenizer.json"))
