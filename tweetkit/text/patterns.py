"""The tweet-noise patterns, in one place: links, mentions, emoji and emoji names.

Each command combines them as it needs (langid removes all of them before predicting,
dedup keys drop links and mentions, stats counts them); the pieces are defined once.
"""

from __future__ import annotations

import re

URL = r"https?://\S+|www\.\S+"
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
    rf"(?:https?://|www\.)\S+|\bhttps?\b|{URL_PLACEHOLDER}|{MENTION}:?|{DEMOJIZED}|{EMOJI}|^RT\b|#"
)
# dedup keys: a leading "RT @user:", links, and mentions (but not the "@" of "@https://...").
DEDUP_NOISE = re.compile(rf"^\s*(?i:RT)\s+{MENTION}:?|{URL}|{URL_PLACEHOLDER}|@(?!https?://|www\.)\w+")
NON_WORD = re.compile(r"[\W_]+")  # punctuation, symbols, emoji and whitespace
SPACES = re.compile(r"\s+")
# stats: a mention not inside a word (not an e-mail address), a link in any case.
MENTION_IN_TEXT = re.compile(rf"(?<!\w){MENTION}")
URL_IN_TEXT = re.compile(rf"{URL}|\b{URL_PLACEHOLDER}\b", re.IGNORECASE)
DEMOJIZED_IN_TEXT = re.compile(DEMOJIZED)
WHOLE_EMOJI_NAME = re.compile(rf"^{DEMOJIZED}$")
