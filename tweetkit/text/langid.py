"""fastText language identification, made tweet-aware.

lid.176 was trained on Wikipedia, Tatoeba and SETimes: it has never seen @handles,
short links, hashtags or emoji, and it reads ALL-CAPS text badly.  `clean_for_langid`
removes what carries no language (for prediction only; records keep their text).
bench/langid.py measures the effect on XLM-T's 8-language tweets.
"""

from __future__ import annotations

from importlib import resources

from tweetkit.errors import ConfigError
from tweetkit.text.patterns import LANGID_NOISE, SPACES

DEFAULT_MODEL = "lid.176.ftz"  # shipped in tweetkit/data, CC-BY-SA-3.0 (see data/LID_MODEL_LICENSE.md)


def clean_for_langid(text: str) -> str:
    """The text fastText should see: no links, mentions, emoji, '#' or case shouting."""
    text = SPACES.sub(" ", LANGID_NOISE.sub(" ", text)).strip()
    # lid.176 mistakes upper-case text for other languages; lower-casing costs nothing
    # on mixed-case text, where it was measured neutral.
    return text.lower()


def default_model_path() -> str:
    return str(resources.files("tweetkit").joinpath("data", DEFAULT_MODEL))


# English names of the languages most common on Twitter, for "did you mean" on --keep english.
LANGUAGE_NAMES = {
    "arabic": "ar", "bengali": "bn", "catalan": "ca", "chinese": "zh", "czech": "cs", "danish": "da", "dutch": "nl",
    "english": "en", "finnish": "fi", "french": "fr", "german": "de", "greek": "el", "hebrew": "he", "hindi": "hi",
    "hungarian": "hu", "indonesian": "id", "italian": "it", "japanese": "ja", "korean": "ko", "malay": "ms",
    "norwegian": "no", "persian": "fa", "polish": "pl", "portuguese": "pt", "romanian": "ro", "russian": "ru",
    "spanish": "es", "swedish": "sv", "tagalog": "tl", "tamil": "ta", "thai": "th", "turkish": "tr",
    "ukrainian": "uk", "urdu": "ur", "vietnamese": "vi",
}  # fmt: skip


def _code_for(name: str, known: dict[str, str]) -> str | None:
    """The code a mistyped --keep value most likely meant: a language's name, or a near code."""
    import difflib

    code = LANGUAGE_NAMES.get(name.lower())
    if code is None:
        close = difflib.get_close_matches(name.lower(), list(LANGUAGE_NAMES) + list(known), n=1, cutoff=0.75)
        code = LANGUAGE_NAMES.get(close[0], close[0]) if close else None
    return known.get(code) if code else None


class LanguageIdentifier:
    """Batch prediction of (language code, probability) with a fastText model."""

    def __init__(self, model_path: str | None = None, clean: bool = True):
        import fasttext

        path = model_path or default_model_path()
        try:
            self.model = fasttext.load_model(path)
        except ValueError as exc:  # fasttext raises ValueError for missing/invalid files
            raise ConfigError(f"cannot load fastText model {path}: {exc}") from None
        self.clean = clean

    def languages(self) -> list[str]:
        """The codes this model can answer (lid.176: en, es, zh, ...; GlotLID: eng_Latn, ...)."""
        return [label.removeprefix("__label__") for label in self.model.get_labels()]

    def canonical_codes(self, codes) -> frozenset:
        """`codes` spelled as the model spells them, matched case-insensitively; an unknown
        code is a ConfigError, since `--keep EN` that matches nothing would drop everything."""
        known = {code.lower(): code for code in self.languages()}
        unknown = sorted(code for code in codes if code.lower() not in known)
        if unknown:
            named = [f"{code} (did you mean {hint}?)" if (hint := _code_for(code, known)) else code for code in unknown]
            raise ConfigError(
                f"--keep: {', '.join(named)} not among this model's {len(known)} language codes "
                f"(e.g. {', '.join(sorted(known)[:6])})"
            )
        return frozenset(known[code.lower()] for code in codes)

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        if self.clean:
            texts = [clean_for_langid(t) for t in texts]
        else:
            texts = [t.replace("\n", " ") for t in texts]  # fastText reads one line per text
        results: list[tuple[str, float] | None] = [None] * len(texts)
        index = [i for i, t in enumerate(texts) if t]
        if index:
            labels, probs = self.model.predict([texts[i] for i in index], k=1)
            for i, label, prob in zip(index, labels, probs):
                results[i] = (label[0].removeprefix("__label__"), round(float(min(prob[0], 1.0)), 4))
        # Nothing left to read (only links, mentions, emoji): undetermined.
        return [r if r is not None else ("und", 0.0) for r in results]
