"""Loading fine-tuned models for inference: HF directories and the classical baselines."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from tweetkit.errors import ConfigError


def quiet_transformers() -> None:
    """Keep transformers' load reports and progress bars off stderr (tweetkit logs what matters)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


@dataclass
class LoadedModel:
    kind: str  # classification | multilabel | regression | tagging
    labels: list[str] | None
    model: object = None  # an HF model, or the scikit-learn pipeline of the baseline
    tokenizer: object = None
    max_length: int = 128

    @property
    def is_tfidf(self) -> bool:
        return self.tokenizer is None


def load_model(path: str, device: str = "auto") -> LoadedModel:
    baseline = os.path.join(path, "tweetkit_model.json")
    if os.path.exists(baseline):
        import joblib

        with open(baseline, encoding="utf-8") as handle:
            info = json.load(handle)
        return LoadedModel(info["task"], info["labels"], joblib.load(os.path.join(path, "tfidf.joblib")))
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    from tweetkit.tasks.supervised import KINDS_BY_PROBLEM
    from tweetkit.tokenizers import load_tokenizer

    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {path}: {str(exc).splitlines()[0]}") from None
    architectures = config.architectures or []
    if any(a.endswith("ForTokenClassification") for a in architectures):
        kind, loader = "tagging", AutoModelForTokenClassification
    elif any(a.endswith("ForSequenceClassification") for a in architectures):
        kind, loader = KINDS_BY_PROBLEM.get(config.problem_type, "classification"), AutoModelForSequenceClassification
    else:
        raise ConfigError(f"{path}: not a fine-tuned classification or tagging model ({', '.join(architectures) or 'no architecture'})")
    model = loader.from_pretrained(path)
    target = torch.device("cuda" if (device == "auto" and torch.cuda.is_available()) or device == "cuda" else "cpu")
    model.to(target).eval()
    labels = None if kind == "regression" else [config.id2label[i] for i in range(config.num_labels)]
    tokenizer = load_tokenizer(path)
    if kind == "tagging" and getattr(tokenizer, "add_prefix_space", None) is False:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True)
    return LoadedModel(kind, labels, model, tokenizer, getattr(config, "max_length_trained", 128))


def predict(loaded: LoadedModel, inputs: list, batch_size: int = 64, threshold: float = 0.5) -> list:
    """Per input: (pred, scores) for sequence tasks, or a tag list for tagging."""
    from tweetkit.tasks.supervised import predict_sequences, predict_tags

    if loaded.is_tfidf:
        from tweetkit import baselines

        return baselines.predict(loaded.model, loaded.kind, inputs)
    if loaded.kind == "tagging":
        return predict_tags(loaded.model, loaded.tokenizer, inputs, loaded.labels, batch_size, loaded.max_length)
    return predict_sequences(loaded.model, loaded.tokenizer, inputs, loaded.kind, loaded.labels, batch_size, loaded.max_length, threshold)
