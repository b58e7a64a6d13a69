"""The tweet-noise patterns, in one place: links, mentions, emoji and emoji names.

Each command combines them as it needs (langid removes all of them before predicting,
dedup keys drop links and mentions, stats counts them); the pieces are defined once.
"""

from __future__ import annotations

import re

# Schemes and hosts are case-insensitive ("HTTPS://T.CO/X" is a link), and a link may be
# glued to the word before it ("reviewshttps://t.co/x"): no word boundary is required.
URL = r"(?i:https?://|www\.)\S+"
# What `normalize` leaves of a link glued to a word ("reviewshttps :/ / t.co/x"): BERTweet's
# tokenizer splits it before the HTTPURL rule sees it.  Twitter's media links
# ("pic.twitter.com/abc") carry no words either.
BROKEN_URL = r"(?i:https?\s?:/\s?/\s?|pic\.twitter\.com/)\S*"
URL_PLACEHOLDER = "HTTPURL"  # what `normalize` writes for a link (BERTweet)
MENTION = r"@\w+"
# An emoji name as `normalize` writes it (":face_with_tears_of_joy:", ":man’s_shoe:").
DEMOJIZED = r":[a-z0-9][a-z0-9_&.’'\-]*[a-z0-9]:"
# Pictographs, dingbats, flags, skin tones, ZWJ, variation selectors and tag characters.
EMOJI = (
    "[\U0001f000-\U0001faff\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\u2190-\u21ff"
    "\u200d\ufe0e\ufe0f\u20e3\U000e0000-\U000e007f\u3030\u303d\u3297\u3299]"
)

# langid: everything that carries no language, incl. a bare "http" left by a cut link,
# the colon of "RT @user:" and the retweet marker.
LANGID_NOISE = re.compile(
    rf"{URL}|{BROKEN_URL}|(?i:\bhttps?\b|{URL_PLACEHOLDER})|{MENTION}:?|{DEMOJIZED}|{EMOJI}|^RT\b|#"
)
# dedup keys: a leading "RT @user:" (any case, "RT@user:" too), links whole or as `normalize`
# splits them, HTTPURL in any case, and mentions (but not the "@" of "@https://...").
DEDUP_NOISE = re.compile(
    rf"^\s*(?i:RT)\s*{MENTION}:?|{URL}|{BROKEN_URL}|(?i:{URL_PLACEHOLDER})|@(?!(?i:https?://|www\.))\w+"
)
NON_WORD = re.compile(r"[\W_]+")  # punctuation, symbols, emoji and whitespace
SPACES = re.compile(r"\s+")
# stats: a mention not inside a word (not an e-mail address), a link in any case.
MENTION_IN_TEXT = re.compile(rf"(?<!\w){MENTION}")
URL_IN_TEXT = re.compile(rf"{URL}|\b{URL_PLACEHOLDER}\b", re.IGNORECASE)
DEMOJIZED_IN_TEXT = re.compile(DEMOJIZED)
WHOLE_EMOJI_NAME = re.compile(rf"^{DEMOJIZED}$")
