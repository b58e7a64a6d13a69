"""BERTweet's tweet normalisation, byte-identical to VinAIResearch/BERTweet's TweetNormalizer.py.

That script is NLTK's TweetTokenizer, a per-token rule (mentions -> @USER, URLs ->
HTTPURL, single characters -> emoji.demojize) and a chain of string fix-ups.
Run plainly it costs one big regex pass and one demojize call per token.  This
version gives the same output with less work:

* It tokenizes each whitespace-separated chunk on its own and caches the
  normalised chunk.  Tweets reuse a small vocabulary of chunks, so most chunks are
  dictionary hits.  This is exact because no TweetTokenizer token crosses
  whitespace, except phone numbers and spaced ellipses ("1 800 555 0199", ". . .");
  a tweet where one of those *could* occur (SPANNING_RE, a deliberate superset)
  takes the whole-text path.
* It compiles NLTK's own pattern strings, so it follows the installed NLTK.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

import regex


def _casual_tokenizer_module():
    """nltk.tokenize.casual without running nltk/__init__, which imports all of nltk
    (scipy.stats among it, slow to import at every start of `normalize`).  The tokenizer's own
    modules need none of that: they load under bare parent packages, which are dropped
    again, so a later `import nltk` runs the whole package (reusing these modules)."""
    import importlib
    import importlib.util
    import os
    import sys
    import types

    if "nltk" in sys.modules:
        return importlib.import_module("nltk.tokenize.casual")
    (root,) = importlib.util.find_spec("nltk").submodule_search_locations
    bare = {}
    for name, path in (("nltk", root), ("nltk.tokenize", os.path.join(root, "tokenize"))):
        bare[name] = sys.modules[name] = types.ModuleType(name)
        bare[name].__path__ = [path]
    try:
        return importlib.import_module("nltk.tokenize.casual")
    finally:
        for name, module in bare.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


_casual = _casual_tokenizer_module()
HANG_RE, REGEXPS_PHONE, _replace_html_entities = _casual.HANG_RE, _casual.REGEXPS_PHONE, _casual._replace_html_entities
redos = _casual.redos

EMOJI_NAME_MODES = ("current", "bertweet")

# TweetTokenizer's core regex (the phone-number variant it uses by default), without
# nltk's per-call wrapper; we keep its ReDoS timeout on every call.
WORD_RE = regex.compile(f"({'|'.join(REGEXPS_PHONE)})", regex.VERBOSE | regex.I | regex.UNICODE)
HANG = regex.compile(HANG_RE.pattern, HANG_RE.flags)
TIMEOUT = redos.DEFAULT_TIMEOUT

# Text where a token could span whitespace: a digit, phone separators with a space,
# then a digit; or dots separated by whitespace.  Also the four separators
# (U+001C..U+001F) that str.split() treats as whitespace but the regex does not.
SPANNING_RE = re.compile(r"\d[ *\-.)]*\s[\s*\-.)(]*\d|\.\s+\.|[\x1c-\x1f]")

REPEAT_RE = re.compile(r"(.)\1\1\1", re.S)  # a superset of what HANG rewrites
LONG_TEXT = 200  # characters; shorter inputs run without the regex timeout's overhead

_spanning = SPANNING_RE.search

CACHE_LIMIT = 1 << 20  # chunks; cleared when full so memory stays bounded on endless streams


# Characters that end a leading word token: none can continue a word, a URL, an email
# or a number, and none is a regex "word" character.
_WORD_ENDERS = frozenset('!"$%()*,/;<>?[]^`{|}~+=&#')


def _alternative(marker: str) -> regex.Pattern:
    """Compile the one TweetTokenizer alternative whose source contains `marker`."""
    (source,) = [alternative for alternative in REGEXPS_PHONE if marker in alternative]
    return regex.compile(source, regex.VERBOSE | regex.I | regex.UNICODE)


URL_RE = _alternative("entire matched URL")
HANDLE_RE = _alternative(r"(?:@[\w_]+)")
HASHTAG_RE = _alternative(r"(?:\#+")


def split_leading_token(chunk: str) -> tuple[str, str] | None:
    """Split off the first TweetTokenizer token of a chunk when it is provably a plain
    word or an @handle, so the costly regex only runs on the (shared, cached) rest.

    Returns None when in doubt; the caller then tokenizes the whole chunk.
    Provably: at position 0 no earlier alternative of TweetTokenizer's regex can
    match (URL, phone, emoticon, email, ZWJ sequence), and the rest does not depend
    on what precedes it (the regex's only look-behind is the "(?<!@)" of naked
    domains, which a letter or word character never triggers).
    """
    if chunk.isalpha():  # letters only: always one word token
        return chunk, ""
    if "@" in chunk[1:]:  # an email address may start anywhere before its "@"
        return None
    first = chunk[0]
    if first == "#" or (first in "hH" and chunk[:4].lower() == "http"):
        # URLs are the regex's first alternative and nothing before hashtags matches a
        # "#", so their match at position 0 is exactly the first token, unless HANG
        # first shortens a run inside it.  (Below, HANG cannot move the split point:
        # it never touches letters, and a run cannot cross a word/non-word boundary.)
        if REPEAT_RE.search(chunk):
            return None
        match = (HASHTAG_RE if first == "#" else URL_RE).match(chunk)
        if match is None:
            return None
        return chunk[: match.end()], chunk[match.end() :]
    if first == "@":
        # An emoticon with '@' as its mouth ("@:", "@-:", "@8") comes before handles.
        if len(chunk) < 2 or chunk[1] in ":;=8" or (chunk[1] in "-o*'" and chunk[2:3] in (":", ";", "=", "8")):
            return None
        match = HANDLE_RE.match(chunk)
        if match is None:
            return None
        return chunk[: match.end()], chunk[match.end() :]
    end = 0
    for char in chunk:
        if not char.isalpha():
            break
        end += 1
    # Three letters rule out emoticons ("Do:", "p:") at position 0.
    if end < 3:
        return None
    stop = chunk[end]
    if stop in _WORD_ENDERS:
        return chunk[:end], chunk[end:]
    if stop == ":" and chunk[:end].lower() not in ("http", "https"):
        return chunk[:end], chunk[end:]
    if stop == ".":
        # "word." and "word..." are a word and punctuation; "word.com" is a domain.
        after = chunk[end:].lstrip(".")[:1]
        if not after or not (after.isascii() and (after.isalnum() or after == "-")):
            return chunk[:end], chunk[end:]
    return None


@cache
def bertweet_emoji_table() -> dict[str, str]:
    """emoji 0.6.0's names for single code points (the names in bertweet-base's vocabulary)."""
    data = resources.files("tweetkit.text").joinpath("emoji_bertweet.json").read_text(encoding="utf-8")
    return json.loads(data)["names"]


def load_lexicon(path: str) -> dict[str, str]:
    """A `noisy<TAB>canonical` dictionary (the paper's "hard" normalisation)."""
    from tweetkit.errors import ConfigError

    lexicon = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.startswith("#"):
                    continue
                parts = line.split("\t")
                if len(parts) != 2 or not parts[0] or not parts[1]:
                    raise ConfigError(f"{path}:{lineno}: expected 'noisy<TAB>canonical'")
                lexicon[parts[0]] = parts[1]
    except OSError as exc:
        raise ConfigError(f"cannot read lexicon {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: lexicon is not valid UTF-8") from None
    return lexicon


class TweetNormalizer:
    """Callable text -> BERTweet-normalised text.

    emoji_names: "current" uses the installed `emoji` package; "bertweet" uses
    emoji 0.6.0's names, which bertweet-base's vocabulary contains.
    lexicon: optional whole-token replacements applied after normalisation.
    """

    def __init__(self, emoji_names: str = "current", lexicon: dict[str, str] | None = None):
        if emoji_names not in EMOJI_NAME_MODES:
            raise ValueError(f"emoji_names must be one of {EMOJI_NAME_MODES}")
        if emoji_names == "bertweet":
            table = bertweet_emoji_table()
            self._demojize = lambda char: table.get(char, char)
        else:
            from emoji import demojize

            self._demojize = demojize
        self.lexicon = lexicon or None
        self._chunks: dict[str, str] = {}
        self._cached = self._chunks.get  # bound once: this runs for every chunk of every tweet
        self._chars: dict[str, str] = {}

    def normalize_token(self, token: str) -> str:
        # Same branch order as TweetNormalizer.normalizeToken: a lone "’" or "…" is
        # a single character, so it reaches demojize and its own branch never runs.
        first = token[0]
        if first == "@":
            return "@USER"
        if first in "hHwW":
            lowered = token.lower()
            if lowered.startswith("http") or lowered.startswith("www"):
                return "HTTPURL"
        if len(token) == 1:
            name = self._chars.get(token)
            if name is None:
                name = self._chars[token] = self._demojize(token)
            return name
        return token

    def _tokens(self, text: str) -> list[str]:
        if REPEAT_RE.search(text):  # cheap pre-check: HANG only rewrites runs of 4+
            text = HANG.sub(r"\1\1\1", text)
        if len(text) > LONG_TEXT:  # only long inputs can backtrack for long (ReDoS guard)
            return WORD_RE.findall(text, timeout=TIMEOUT)
        return WORD_RE.findall(text)

    def _normalize_chunk(self, chunk: str) -> str:
        """Normalise a whitespace-free chunk and cache it (called on cache misses)."""
        split = split_leading_token(chunk)
        if split is None:
            normalized = " ".join([self.normalize_token(t) for t in self._tokens(chunk)])
        else:
            head, rest = split
            normalized = self.normalize_token(head)
            if rest:
                # The rest tokenizes as it would in place (see split_leading_token),
                # and it is usually a frequent suffix like ":" or "!", already cached.
                normalized += " " + (self._chunks.get(rest) or self._normalize_chunk(rest))
        if len(self._chunks) >= CACHE_LIMIT:
            self._chunks.clear()
        self._chunks[chunk] = normalized
        return normalized

    def __call__(self, tweet: str) -> str:
        text = tweet.replace("’", "'").replace("…", "...")
        if "&" in text:  # TweetTokenizer decodes HTML entities before anything else
            text = _replace_html_entities(text)
        spanning = _spanning(text) is not None
        if spanning:
            joined = " ".join([self.normalize_token(t) for t in self._tokens(text)])
        else:
            chunks = text.split()
            parts = list(map(self._cached, chunks))
            try:
                miss = parts.index(None)
                while True:
                    parts[miss] = self._normalize_chunk(chunks[miss])
                    miss = parts.index(None, miss + 1)
            except ValueError:  # no (more) cache misses
                pass
            joined = " ".join(parts)
        # The string fix-ups of TweetNormalizer, in its order; the guards only skip
        # replace() calls that cannot match.
        if "cannot " in joined:
            joined = joined.replace("cannot ", "can not ")
        if "'" in joined:
            joined = (
                joined.replace("n't ", " n't ")
                .replace("n 't ", " n't ")
                .replace("ca n't", "can't")
                .replace("ai n't", "ain't")
            )
            joined = (
                joined.replace("'m ", " 'm ")
                .replace("'re ", " 're ")
                .replace("'s ", " 's ")
                .replace("'ll ", " 'll ")
                .replace("'d ", " 'd ")
                .replace("'ve ", " 've ")
            )
        if " . m " in joined or " . m ." in joined:
            joined = (
                joined.replace(" p . m .", "  p.m.")
                .replace(" p . m ", " p.m ")
                .replace(" a . m .", " a.m.")
                .replace(" a . m ", " a.m ")
            )
        if self.lexicon:
            lexicon = self.lexicon
            return " ".join([lexicon.get(t, t) for t in joined.split()])
        # Chunk tokens hold no whitespace, so only the fix-ups above can leave a run of
        # spaces or an edge space for the final whitespace collapse to remove.
        if spanning or "  " in joined or joined[:1] == " " or joined[-1:] == " ":
            return " ".join(joined.split())
        return joined
