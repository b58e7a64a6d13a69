"""normalize: byte-identical to BERTweet's TweetNormalizer rules (tests/bertweet_oracle.py)."""

import random

import pytest
from bertweet_oracle import reference_normalizer
from conftest import jsonl, read_jsonl, run_cli, sliced

from tweetkit.text.normalize import TweetNormalizer, bertweet_emoji_table

MODES = ["current", "bertweet"]

HARD_CASES = [
    "",
    "   ",
    "\t\n ",
    "tabs\tand\nnewlines\r\ninside  text",
    "👨‍👩‍👧‍👦 family ZWJ, 👩🏽‍💻 coder, 👍🏿 skin tone",
    "flags 🇺🇸🇫🇷 and 🏴󠁧󠁢󠁳󠁣󠁴󠁿 scotland",
    "keycaps 1️⃣ #️⃣ *️⃣ and variation ❤️ ☺︎ ✔️ ✔",
    "‘curly’ “quotes” it’s don’t can’t won’t I’m you’re they’ve we’d she’ll",
    "ellipses… and... and . . . and .. and….",
    "a.m. at the start and at the end p.m.",
    "meet at 5 p.m. or 10 a.m tomorrow, or 7 a . m .",
    "I cannot go, you cannot stop me. Cannot.",
    "ain't can't won't shouldn't couldn't didn't",
    "@user @User_123: RT @someone: hi",
    "HTTPS://Example.COM/x www.google.com http://t.co/abc). (http://x.co/a)",
    "call 555-123-4567 or (800) 555 0199 or +1 800 555 0199 now",
    "emails a.b@c.com and @ alone and @@double",
    "hashtags #COVID19 #covid_19 ##double #tag's #a",
    "emoticons :) :-( ;P <3 </3 :D xD D: @8 >:( o_O",
    "arrows -> <-- <html> &amp; &lt;3 &gt;&gt; &#8230; &#128514; &bogus;",
    "loooooool !!!!!!! ?????? ........ ------ ______",
    "mixed Ünïcödé wörds café naïve straße 東京 مرحبا हिंदी",
    "\u00a0nbsp\u00a0inside\u2003em space\u200bzero width",
    "\x1cfile\x1dgroup\x1erecord\x1funit separators",
    "the end…",
    "…",
    "’",
    "It’s 3:30 and 12,000 people paid $4.50 or 1/2 price 20%",
    "😂😂😂😂😂 🤖 ✔ ☀ ⚽ 🏳️‍🌈 🧑🏾‍🤝‍🧑🏻",
    "word.com word. word... word.! word:( word:D wo:D Do: p: http: https:x",
]

ALPHABET = (
    list("aAbz09 .,:;!?'’…-_@#/()<>&*\"=+$%")
    + [
        "\t",
        "\n",
        "\u00a0",
        "😂",
        "🏽",
        "\u200d",
        "\ufe0f",
        "🇺",
        "é",
        "\u0301",
        "x",
        "t",
        "h",
        "p",
        "w",
        "m",
        "n",
        "’",
    ]
    + ["http", "www.", "n't", "can", "not", "p.m.", " . ", "555", "&amp;", "@user", "#tag", ".com", ":)", "xD"]
)


@pytest.fixture(scope="module", params=MODES)
def pair(request):
    return TweetNormalizer(request.param), reference_normalizer(request.param)


def test_hard_cases_identical(pair):
    fast, reference = pair
    for text in HARD_CASES:
        assert fast(text) == reference(text), text


def test_random_strings_identical(pair):
    fast, reference = pair
    rng = random.Random(1234)
    for _ in range(3000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 30)))
        assert fast(text) == reference(text), repr(text)


@pytest.mark.parametrize(
    "path,limit",
    [("raw_tweets/tweets.jsonl", None), ("xlmt_sentiment/validation.jsonl", None), ("semeval2017/test.jsonl", None)],
)
def test_real_tweets_identical(pair, path, limit):
    fast, reference = pair
    for row in read_jsonl(sliced(path), limit):
        assert fast(row["text"]) == reference(row["text"]), row["text"]


def test_known_outputs():
    normalize = TweetNormalizer()
    assert normalize("@bob I can't believe it’s 5 p.m. https://t.co/x") == "@USER I can't believe it 's 5 p.m. HTTPURL"
    assert normalize("🤖") == ":robot:"
    assert TweetNormalizer("bertweet")("🤖 ✔") == ":robot_face: :heavy_check_mark:"


def test_bertweet_table_is_emoji_060():
    table = bertweet_emoji_table()
    assert table["😂"] == ":face_with_tears_of_joy:"
    assert table["🤖"] == ":robot_face:"
    assert 1200 < len(table) < 1400  # single code points named by emoji 0.6.0


def test_lexicon_and_output_field(tmp_path):
    lexicon = tmp_path / "lex.tsv"
    lexicon.write_text("# comment\nu\tyou\nluv\tlove\n", encoding="utf-8")
    result = run_cli(
        ["normalize", "--lexicon", str(lexicon), "--output-field", "norm"],
        stdin=jsonl({"text": "luv u @bob"}),
    )
    assert result.exit_code == 0, result.stderr
    (record,) = result.records()
    assert record == {"text": "luv u @bob", "norm": "love you @USER"}


def test_bad_lexicon_is_one_line_error(tmp_path):
    lexicon = tmp_path / "lex.tsv"
    lexicon.write_text("u\tyou\nbroken line\n", encoding="utf-8")
    result = run_cli(["normalize", "--lexicon", str(lexicon)], stdin=jsonl({"text": "x"}))
    assert result.exit_code == 1
    assert f"{lexicon}:2:" in result.stderr and "Traceback" not in result.stderr


def test_emoji_names_flag():
    result = run_cli(["normalize", "--emoji-names", "bertweet"], stdin=jsonl({"text": "🤖"}))
    assert result.records()[0]["text"] == ":robot_face:"
