"""Regenerate tweetkit/text/emoji_bertweet.json: emoji 0.6.0's names for single code points.

bertweet-base was trained on text demojized by emoji 0.6.0, whose names differ from
today's (U+1F916 was `:robot_face:`, now `:robot:`).  BERTweet's normaliser only
demojizes single-character tokens, so the table maps every code point that
emoji 0.6.0 renames to that name.  Run once, in a scratch venv:

    python3 -m venv /tmp/emoji06 && /tmp/emoji06/bin/pip install emoji==0.6.0
    /tmp/emoji06/bin/python scripts/make_emoji_bertweet_table.py
"""

import json
import pathlib

import emoji

assert emoji.__version__ == "0.6.0", f"needs emoji==0.6.0, found {emoji.__version__}"

table = {}
for code_point in range(0x110000):
    if 0xD800 <= code_point <= 0xDFFF:  # lone surrogates are not valid text
        continue
    char = chr(code_point)
    name = emoji.demojize(char)
    if name != char:
        table[char] = name

out = pathlib.Path(__file__).resolve().parent.parent / "tweetkit" / "text" / "emoji_bertweet.json"
out.write_text(
    json.dumps({"emoji_version": emoji.__version__, "names": table}, ensure_ascii=False, indent=0, sort_keys=True)
    + "\n",
    encoding="utf-8",
)
print(f"wrote {len(table)} names to {out}")
