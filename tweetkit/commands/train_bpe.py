"""tweetkit train-bpe: train (or extend) a subword tokenizer; writes a fast HF tokenizer directory."""

from __future__ import annotations

import time

import click

from tweetkit.errors import ConfigError
from tweetkit.options import data_options
from tweetkit.records import emit_json
from tweetkit.reports import log_for


@click.command(
    "train-bpe",
    epilog="""\b
Examples:
  tweetkit train-bpe corpus.jsonl -o tok/ --vocab-size 64000
  tweetkit train-bpe corpus.jsonl -o tok/ --algorithm unigram --backend sentencepiece
  tweetkit train-bpe corpus.jsonl -o tok-ext/ --extend path/to/base-model --vocab-size 5000
  tweetkit train-bpe corpus.jsonl -o tok/ --report-overlap vinai/bertweet-base""",
)
@data_options(output_help="Output directory: tokenizer.json and tokenizer_config.json.  [required]", output_shown=False)
@click.option(
    "--vocab-size",
    type=click.IntRange(min=16),
    default=32000,
    show_default=True,
    help="Vocabulary size (with --extend: the most new pieces to add).",
)
@click.option("--algorithm", type=click.Choice(["bpe", "unigram"]), default="bpe", show_default=True)
@click.option(
    "--backend",
    type=click.Choice(["sentencepiece", "hf"]),
    default="sentencepiece",
    show_default=True,
    help="Library that trains (sentencepiece: faster in bench/train_bpe.py); "
    "the output is the same kind of fast HF tokenizer.",
)
@click.option("--user-symbols", default="", help="Comma-separated extra words to keep as single pieces.")
@click.option(
    "--all-emoji-names", is_flag=True, help="Make every known emoji name atomic, not only those in the corpus."
)
@click.option(
    "--max-sentences",
    type=click.IntRange(min=1),
    help="Train on a uniform sample of this many tweets (reservoir, --seed).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--extend", "base", help="A tokenizer directory or model name/path: add new pieces, keeping every old id."
)
@click.option("--report-overlap", "other", help="Also report the share of pieces shared with this tokenizer.")
@click.option("--model-max-length", type=click.IntRange(min=1), default=128, show_default=True)
def command(
    stream,
    vocab_size,
    algorithm,
    backend,
    user_symbols,
    all_emoji_names,
    max_sentences,
    seed,
    base,
    other,
    model_max_length,
):
    """Train a subword tokenizer on tweets, or extend an existing one.

    Writes DIR (-o) with tokenizer.json and tokenizer_config.json, loadable with
    transformers.AutoTokenizer as a fast tokenizer.  @USER, HTTPURL and the emoji
    names found in the corpus stay single pieces.  Prints a JSON summary on stdout.
    """
    from tweetkit import tokenizers as tk
    from tweetkit.io import consume_records
    from tweetkit.modeling import load_tokenizer

    if stream.output == "-":
        raise click.UsageError("give the output directory with -o DIR")
    directory = stream.output
    # Both checked before the corpus is read and trained on: a wrong name fails at once.
    other_tokenizer = load_tokenizer(other) if other else None
    if base:
        from tweetkit.modeling import check_source

        check_source(base, "tokenizer")
    start = time.perf_counter()
    texts = (record[stream.field] for record in consume_records("train-bpe", stream, text_field=stream.field))
    corpus = tk.sample_corpus(texts, max_sentences, seed)
    if not corpus.texts:
        raise ConfigError("no tweets to train on (empty input)")
    summary: dict = {"tweets_read": corpus.seen, "tweets_trained_on": len(corpus.texts)}
    log = log_for("train-bpe", stream.quiet)
    if base:
        result = extend(base, corpus.texts, vocab_size, directory, summary, log)
    else:
        atomic = atomic_words(corpus.emoji_names, all_emoji_names, user_symbols)
        settings = (algorithm, backend, vocab_size, atomic, directory, model_max_length)
        result = train_new(corpus.texts, *settings, summary, log)
    if other:
        summary["overlap"] = {"other": other, **tk.vocabulary_overlap(result, other_tokenizer)}
    summary["seconds"] = round(time.perf_counter() - start, 1)
    summary["output"] = directory
    emit_json(summary)


def atomic_words(emoji_names_found, all_emoji_names: bool, user_symbols: str) -> list[str]:
    """The words kept as single pieces: the placeholders, the emoji names (those the corpus
    holds, or all with --all-emoji-names) and --user-symbols, each once."""
    from tweetkit import tokenizers as tk

    atomic = list(tk.PLACEHOLDERS)
    atomic += sorted(tk.known_emoji_names()) if all_emoji_names else sorted(emoji_names_found)
    atomic += [s.strip() for s in user_symbols.split(",") if s.strip()]
    return list(dict.fromkeys(atomic))


def train_new(texts, algorithm, backend, vocab_size, atomic, directory, model_max_length, summary, log):
    """A new tokenizer whose `atomic` words are single pieces; the summary gains its figures."""
    from tweetkit import tokenizers as tk
    from tweetkit.modeling import load_tokenizer

    train = tk.train_hf if backend == "hf" else tk.train_sentencepiece
    log(f"training {algorithm} ({backend}) on {len(texts):,} tweets, {len(atomic):,} atomic words")
    final = tk.with_roberta_template(
        tk.train_with_whole_words(train, texts, algorithm, vocab_size, atomic, len(tk.SPECIAL_TOKENS))
    )
    tk.save_fast_tokenizer(final, directory, model_max_length)
    result = load_tokenizer(directory)
    if len(result.get_vocab()) < vocab_size:
        log(f"warning: the corpus filled {len(result.get_vocab()):,} of the {vocab_size:,} pieces asked for")
    summary.update(
        algorithm=algorithm,
        backend=backend,
        vocab_size=len(result.get_vocab()),
        atomic_words=len(atomic),
        **tk.pieces_per_tweet(result, texts),
    )
    return result


def extend(base: str, texts, vocab_size: int, directory: str, summary: dict, log):
    """`base` with up to `vocab_size` new pieces, every old id kept; the summary gains before/after figures."""
    from tweetkit import tokenizers as tk
    from tweetkit.modeling import load_tokenizer

    base_tokenizer = load_tokenizer(base)
    before = tk.pieces_per_tweet(base_tokenizer, texts)
    log(f"extending {base} ({len(base_tokenizer.get_vocab()):,} pieces) on {len(texts):,} tweets")
    backend_tokenizer, added = tk.extend_tokenizer(base_tokenizer, texts, vocab_size)
    tk.save_extended(base_tokenizer, backend_tokenizer, directory)
    result = load_tokenizer(directory)
    after = tk.pieces_per_tweet(result, texts)
    mean_before, mean_after = before["pieces_per_tweet_mean"], after["pieces_per_tweet_mean"]
    summary.update(
        base=base,
        old_vocab_size=len(base_tokenizer.get_vocab()),
        new_vocab_size=len(result.get_vocab()),
        added_pieces=len(added),
        pieces_per_tweet_before=mean_before,
        pieces_per_tweet_after=mean_after,
        pieces_per_tweet_drop=round(1 - mean_after / mean_before, 4) if mean_before else 0.0,
        unknown_share_before=before["unknown_share"],
        unknown_share_after=after["unknown_share"],
    )
    return result
