"""The reference: BERTweet's TweetNormalizer rules, written out plainly.

TweetTokenizer, a per-token function and a str.replace chain, exactly as the
published TweetNormalizer.py applies them.  tweetkit's fast normaliser must give
byte-identical output; bench/normalize.py times both.
"""

from nltk.tokenize import TweetTokenizer

_tokenizer = TweetTokenizer()


def make_reference(demojize):
    def normalize_token(token):
        lowercased_token = token.lower()
        if token.startswith("@"):
            return "@USER"
        elif lowercased_token.startswith("http") or lowercased_token.startswith("www"):
            return "HTTPURL"
        elif len(token) == 1:
            return demojize(token)
        else:
            if token == "’":
                return "'"
            elif token == "…":
                return "..."
            else:
                return token

    def normalize_tweet(tweet):
        tokens = _tokenizer.tokenize(tweet.replace("’", "'").replace("…", "..."))
        norm = " ".join([normalize_token(token) for token in tokens])
        norm = (
            norm.replace("cannot ", "can not ")
            .replace("n't ", " n't ")
            .replace("n 't ", " n't ")
            .replace("ca n't", "can't")
            .replace("ai n't", "ain't")
        )
        norm = (
            norm.replace("'m ", " 'm ")
            .replace("'re ", " 're ")
            .replace("'s ", " 's ")
            .replace("'ll ", " 'll ")
            .replace("'d ", " 'd ")
            .replace("'ve ", " 've ")
        )
        norm = (
            norm.replace(" p . m .", "  p.m.")
            .replace(" p . m ", " p.m ")
            .replace(" a . m .", " a.m.")
            .replace(" a . m ", " a.m ")
        )
        return " ".join(norm.split())

    return normalize_tweet


def reference_normalizer(emoji_names="current"):
    if emoji_names == "bertweet":
        from tweetkit.text.normalize import bertweet_emoji_table

        table = bertweet_emoji_table()
        return make_reference(lambda char: table.get(char, char))
    from emoji import demojize

    return make_reference(demojize)
