"""The linear baselines `finetune --model linear` trains and `predict`/`evaluate` load.

Classification: word and character n-gram TF-IDF + logistic regression (the SVM/FastText
rows of TweetEval). Tagging: logistic regression over sparse per-word features (the word,
its affixes and shape, its neighbours), each word classified on its own: the linear
tagger that NER and POS papers put under their neural rows.
"""

from __future__ import annotations

import re

from tweetkit.errors import ConfigError

# Shape classes: runs of the same class collapse ("Obama2020" -> "Xx0").
_SHAPE = [(re.compile(r"[A-Z]"), "X"), (re.compile(r"[a-z]"), "x"), (re.compile(r"[0-9]"), "0")]


def word_shape(word: str) -> str:
    shape = []
    for char in word:
        cls = next((s for pattern, s in _SHAPE if pattern.match(char)), char if not char.isalpha() else "a")
        if not shape or shape[-1] != cls:
            shape.append(cls)
    return "".join(shape)[:8]


def word_features(words: list[str]) -> list[dict[str, float]]:
    """One sparse feature dict per word of a sentence."""
    lowered, shapes = [w.lower() for w in words], [word_shape(w) for w in words]
    features = []
    for i, word in enumerate(words):
        low = lowered[i]
        feats = {
            "bias": 1.0,
            f"w={low}": 1.0,
            f"shape={shapes[i]}": 1.0,
            f"p1={low[:1]}": 1.0,
            f"p2={low[:2]}": 1.0,
            f"p3={low[:3]}": 1.0,
            f"s1={low[-1:]}": 1.0,
            f"s2={low[-2:]}": 1.0,
            f"s3={low[-3:]}": 1.0,
            f"s4={low[-4:]}": 1.0,
        }
        if word[:1].isupper():
            feats["title"] = 1.0
        if word.isupper() and any(c.isalpha() for c in word):
            feats["upper"] = 1.0
        if word.startswith("@"):
            feats["mention"] = 1.0
        if word.startswith("#"):
            feats["hashtag"] = 1.0
            feats[f"w={low[1:]}"] = 1.0  # #Obama shares the evidence of Obama
        if low.startswith(("http", "www.")) or low == "httpurl":
            feats["url"] = 1.0
        if i == 0:
            feats["first"] = 1.0
        for offset in (-2, -1, 1, 2):
            j = i + offset
            neighbour = lowered[j] if 0 <= j < len(words) else ("<s>" if j < 0 else "</s>")
            feats[f"w{offset:+d}={neighbour}"] = 1.0
            if offset in (-1, 1) and 0 <= j < len(words):
                feats[f"shape{offset:+d}={shapes[j]}"] = 1.0
        features.append(feats)
    return features


def fit(kind: str, inputs: list, targets: list, c: float = 1.0, balanced: bool = True):
    """A fitted scikit-learn pipeline: texts -> labels, or word lists -> tag lists (flattened).

    `balanced` weights classes by inverse frequency. finetune turns it on for classification
    and BIO tags (NER, where O is most words) and off for other tags (POS): the choice
    `python bench/tagging_baseline.py` measures on WNUT-17 and ARK validation.
    """
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    if kind == "tagging":
        pipeline = make_pipeline(
            DictVectorizer(),
            LogisticRegression(max_iter=2000, C=c, class_weight="balanced" if balanced else None, random_state=0),
        )
        pipeline.fit([f for words in inputs for f in word_features(words)], [t for tags in targets for t in tags])
        return pipeline
    pipeline = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, lowercase=True),
        ),
        LogisticRegression(max_iter=2000, C=c, class_weight="balanced" if balanced else None, random_state=0),
    )
    pipeline.fit(inputs, [str(t) for t in targets])
    return pipeline


def predict(pipeline, kind: str, inputs: list) -> list:
    """Tag lists for tagging; (label, {label: probability}) pairs for classification."""
    if kind == "tagging":
        flat = [f for words in inputs for f in word_features(words)]
        tags = pipeline.predict(flat).tolist() if flat else []
        out, start = [], 0
        for words in inputs:
            out.append([str(t) for t in tags[start : start + len(words)]])
            start += len(words)
        return out
    probabilities = pipeline.predict_proba(inputs)
    classes = [str(c) for c in pipeline.classes_]
    return [
        (classes[int(row.argmax())], {c: round(float(p), 6) for c, p in zip(classes, row)}) for row in probabilities
    ]


# --- saving and loading, as data only ----------------------------------------------------
# A model directory may come from a stranger, so nothing here unpickles: the vectorizers'
# vocabularies go to JSON, the numbers to safetensors, and the estimators are rebuilt
# from them.  tests/test_safety.py checks the predictions survive the round trip exactly.

MODEL_INFO = "tweetkit_model.json"
WEIGHTS = "linear_model.safetensors"
VOCABULARY = "linear_vocabulary.json"
PICKLED = "tfidf.joblib"  # an older tweetkit's pickled model: recognised, never loaded
FORMAT = 1
_TFIDF_PARAMS = ("analyzer", "ngram_range", "min_df", "sublinear_tf", "lowercase")
_LOGISTIC_PARAMS = ("C", "max_iter", "class_weight", "random_state")


def save(pipeline, kind: str, labels: list[str], directory: str) -> None:
    """Write the fitted pipeline of `fit` as JSON + safetensors (no pickle)."""
    import json
    import os

    import numpy as np
    from safetensors.numpy import save_file

    vectorizer, classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
    arrays = {"coef": np.ascontiguousarray(classifier.coef_), "intercept": np.ascontiguousarray(classifier.intercept_)}
    info = {
        "type": "linear",
        "format": FORMAT,
        "task": kind,
        "labels": labels,
        "classes": [str(c) for c in classifier.classes_],
        "classifier": {name: classifier.get_params()[name] for name in _LOGISTIC_PARAMS},
    }
    if kind == "tagging":
        info["features"] = "word"
        vocabulary = {"word": vectorizer.vocabulary_}
    else:
        info["features"] = "tfidf"
        info["vectorizers"] = []
        vocabulary = {}
        for name, tfidf in vectorizer.transformer_list:
            params = {key: tfidf.get_params()[key] for key in _TFIDF_PARAMS}
            info["vectorizers"].append({"name": name, **params})
            vocabulary[name] = {term: int(index) for term, index in tfidf.vocabulary_.items()}
            arrays[f"idf.{name}"] = np.ascontiguousarray(tfidf.idf_)
    os.makedirs(directory, exist_ok=True)
    save_file(arrays, os.path.join(directory, WEIGHTS))
    with open(os.path.join(directory, VOCABULARY), "w", encoding="utf-8") as handle:
        json.dump(vocabulary, handle, ensure_ascii=False)
    with open(os.path.join(directory, MODEL_INFO), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)


def load(directory: str) -> tuple[dict, object]:
    """(info, pipeline) of a directory `save` wrote; ConfigError for anything else."""
    import json
    import os

    import numpy as np
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    for name in (MODEL_INFO, VOCABULARY, WEIGHTS):
        if not os.path.isfile(os.path.join(directory, name)):
            raise ConfigError(f"{directory}: incomplete linear model: {name} is missing")
    try:
        with open(os.path.join(directory, MODEL_INFO), encoding="utf-8") as handle:
            info = json.load(handle)
        with open(os.path.join(directory, VOCABULARY), encoding="utf-8") as handle:
            vocabulary = json.load(handle)
        arrays = load_file(os.path.join(directory, WEIGHTS))
        classifier = LogisticRegression(**info["classifier"])
        classifier.classes_ = np.asarray(info["classes"])
        classifier.coef_, classifier.intercept_ = arrays["coef"], arrays["intercept"]
        classifier.n_features_in_ = classifier.coef_.shape[1]
        if info["features"] == "word":
            vectorizer = DictVectorizer()
            vectorizer.vocabulary_ = vocabulary["word"]
            vectorizer.feature_names_ = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
        else:
            parts = []
            for spec in info["vectorizers"]:
                params = {
                    key: tuple(value) if key == "ngram_range" else value for key, value in spec.items() if key != "name"
                }
                tfidf = TfidfVectorizer(**params)
                tfidf.vocabulary_, tfidf.fixed_vocabulary_ = vocabulary[spec["name"]], False
                tfidf.idf_ = arrays[f"idf.{spec['name']}"]
                parts.append(tfidf)
            vectorizer = make_union(*parts)
        return info, make_pipeline(vectorizer, classifier)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise ConfigError(
            f"{directory}: unreadable linear model "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
