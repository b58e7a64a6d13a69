"""The pretraining recipe: RoBERTa-style MLM from scratch or continued (or SimCSE or TSDAE on a
sentence encoder, optionally anchored to its start), packed, distributed, resumable (`tweetkit pretrain`)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass
class PretrainConfig:
    """One `pretrain` job: the corpus, the model to start from, the objective and the training core's settings."""

    train_files: list[str]
    tokenizer: str  # a train-bpe directory or a model name
    output: str
    train: dict = dataclasses.field(default_factory=dict)  # the training core's settings (TrainConfig fields)
    validation: str | None = None
    model_config: str = "tiny"  # tiny | small | base | PATH.json, for a model trained from scratch
    init_from: str | None = None  # continue pretraining this model instead
    new_token_init: str = "mean"  # rows of new vocabulary pieces: the mean of their old pieces, or random
    freeze_base: bool = False  # train only the masked-LM head
    keep_best: bool = False  # save the weights of the lowest validation loss instead of the last
    field: str = "text"
    on_error: str = "fail"
    max_length: int = 128  # tokens per packed row
    mask_prob: float = 0.15  # the masking rate's one default (MLMTask.collate masks 80/10/10)
    objective: str = "mlm"  # mlm | simcse | tsdae
    deletion: float = 0.6  # tsdae: the share of each tweet's tokens deleted
    temperature: float = 0.05  # simcse: the softmax temperature
    anchor: str | None = None  # WEIGHT, or L2SP,DISTILL with anchor_kind both
    anchor_kind: str | None = None  # l2sp | distill | both
    cache_dir: str | None = None  # the tokenized-corpus cache [default: ~/.cache/tweetkit]
    flags: dict = dataclasses.field(default_factory=dict)  # the resolved flags, saved for --config
    quiet: bool = False


# --- checks ----------------------------------------------------------------------------


def check_config(config: PretrainConfig) -> dict | None:
    """Refuse settings that cannot work together; returns the anchor's weights by kind, or None."""
    from tweetkit.errors import UsageError

    if config.keep_best and not config.validation:
        raise UsageError("--keep-best needs --validation: the best weights are those of the lowest validation loss")
    if config.train.get("head_warmup_steps") and not config.init_from:
        raise UsageError(
            "--head-warmup-steps needs --init-from: a model trained from scratch has no new head to warm up"
        )
    check_objective(config.objective, config.init_from, config.train.get("head_warmup_steps"), config.freeze_base)
    return check_anchor(config.anchor, config.anchor_kind, config.init_from, config.freeze_base)


def check_objective(objective: str, init_from, head_warmup_steps: int, freeze_base: bool) -> None:
    """SimCSE and TSDAE train the encoder and no MLM head; SimCSE adapts a pretrained one."""
    from tweetkit.errors import UsageError

    name = {"simcse": "SimCSE", "tsdae": "TSDAE"}.get(objective)
    if name is None:
        return
    refusals = ((objective == "simcse" and not init_from, "without --init-from: SimCSE adapts a pretrained encoder"),
                (head_warmup_steps, f"with --head-warmup-steps: {name} trains no head"),
                (freeze_base, f"with --freeze-base: {name} trains the encoder, not a head"))  # fmt: skip
    for given, flag in refusals:
        if given:
            raise UsageError(f"--objective {objective} cannot run {flag}")


def check_anchor(anchor, kind, init_from, freeze_base: bool) -> dict | None:
    """The anchor's weights by kind, or None; refused where there is no start to anchor to."""
    from tweetkit.errors import UsageError

    if anchor is None:
        if kind is not None:
            raise UsageError("--anchor-kind needs --anchor WEIGHT")
        return None
    if not init_from:
        raise UsageError("--anchor needs --init-from: it pulls toward the starting model's weights")
    if freeze_base:
        raise UsageError("--anchor cannot run with --freeze-base: the encoder it anchors does not train")
    from tweetkit.tasks.anchor import anchor_weights

    return anchor_weights(anchor, kind)


def settings_of(config: PretrainConfig, weights: dict | None) -> dict:
    """What the run computes from (saved, and compared on --resume); a setting added after
    runs were saved is present only when used, so that those runs resume unchanged."""
    init_from = config.init_from
    setup = dict(
        train=list(config.train_files), validation=config.validation, field=config.field, on_error=config.on_error,
        tokenizer=config.tokenizer, model=init_from or config.model_config, init_from=init_from,
        new_token_init=config.new_token_init if init_from else None, freeze_base=config.freeze_base,
        max_length=config.max_length, mask_prob=config.mask_prob,
    )  # fmt: skip
    if config.keep_best:
        setup["keep_best"] = True
    if config.objective == "simcse":
        setup.update(objective=config.objective, temperature=config.temperature)
    if config.objective == "tsdae":
        setup.update(objective=config.objective, deletion=config.deletion)
    if weights:
        setup["anchor"] = weights
    return setup


# --- the run ---------------------------------------------------------------------------


def run(config: PretrainConfig) -> None:
    """The recipe: tokenize (rank 0 first, the others read its cache), build or load the
    model, train on the shared core, save the model beside its tokenizer and config."""
    from tweetkit.io import StreamOptions
    from tweetkit.output_dir import prepare_output_dir
    from tweetkit.reports import log_for
    from tweetkit.train import distributed

    weights = check_config(config)
    setup = settings_of(config, weights)
    train = dict(config.train)
    dist = distributed.setup(train["device"], train["dist_timeout"])
    prepare_output_dir(
        config.output, resume=train["resume"], overwrite=train["overwrite"], remove=dist.is_main
    )  # every rank checks, rank 0 removes
    dist.barrier()
    log = log_for("pretrain", config.quiet or not dist.is_main)
    stream = StreamOptions(field=config.field, on_error=config.on_error, quiet=config.quiet or not dist.is_main)
    try:
        train_and_save(config, setup, train, stream, dist, log)
        dist.barrier()  # leave together: a process that tears its group down while another still writes can abort
    finally:
        distributed.teardown()


def train_and_save(config: PretrainConfig, setup: dict, train: dict, stream, dist, log) -> None:
    """Build the model and its objective, train them, save the model (rank 0)."""
    import torch

    from tweetkit.modeling import load_tokenizer, save_model
    from tweetkit.train.best import BestKeeper
    from tweetkit.train.config import TrainConfig
    from tweetkit.train.loop import train as train_loop

    max_steps = train.pop("max_steps")
    cache = config.cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "tweetkit")
    tok = load_tokenizer(setup["tokenizer"])
    train_corpus, validation_corpus = tokenize_corpora(setup, tok, stream, cache, dist, log)
    model, phases = pretraining_model(setup, tok, train["seed"], train["head_warmup_steps"], log)
    task = pretraining_task(config, train_corpus, validation_corpus, tok, train["seed"], model_offset(model, setup))
    if setup.get("anchor"):
        task = anchored(task, model, setup["anchor"], log)
    log(
        f"{len(train_corpus):,} tweets in {task.num_examples():,} packed rows of <= {setup['max_length']} tokens; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; "
        f"{dist.world} process(es) of {torch.get_num_threads()} thread(s)"
    )
    run_config = TrainConfig(
        **train, max_steps=max_steps or 0, output_dir=config.output, run=run_settings(setup, tok, model),
        model_config=model.config.to_diff_dict(), flags=config.flags,
    )  # fmt: skip
    keeper = BestKeeper("loss", lower_is_better=True) if setup.get("keep_best") else None  # validation MLM loss
    if max_steps != 0:
        on_save = lambda m, path: tok.save_pretrained(path)  # noqa: E731
        train_loop(model, task, run_config, dist, on_save=on_save, keeper=keeper, log=log, phases=phases)
    if dist.is_main:  # with --max-steps 0: the initialised model, untrained, for inspection
        if keeper is not None and keeper.weights is not None:
            keeper.load_best_into(model)
            write_best(config.output, keeper, log)
        save_model(getattr(model, "mlm", model), tok, config.output)  # TSDAE's decoder stays in the checkpoints
        run_config.save(config.output)
        log(f"model written to {config.output}")


def tokenize_corpora(setup: dict, tok, stream, cache: str, dist, log):
    """(train, validation) token corpora: the first process of each machine tokenizes and
    caches them (the cache may be local to a machine), the others then memory-map the cache."""
    from tweetkit.errors import ConfigError
    from tweetkit.tasks.mlm import tokenize_corpus

    validation = setup["validation"]

    def corpora():
        train_corpus = tokenize_corpus(setup["train"], tok, stream, cache, log)
        return train_corpus, tokenize_corpus([validation], tok, stream, cache, log) if validation else None

    if dist.is_local_main:
        train_corpus, validation_corpus = corpora()
    dist.barrier()
    if not dist.is_local_main:
        train_corpus, validation_corpus = corpora()
    if len(train_corpus) == 0:
        raise ConfigError("the training corpus is empty")
    return train_corpus, validation_corpus


def pretraining_task(config: PretrainConfig, train_corpus, validation_corpus, tok, seed: int, offset: int):
    """The objective on packed rows: MLM, or SimCSE or TSDAE with --objective."""
    packing = (train_corpus, validation_corpus, tok, config.max_length, seed, offset)
    if config.objective == "tsdae":
        from tweetkit.tasks.tsdae import TSDAETask

        return TSDAETask(*packing, deletion=config.deletion)
    if config.objective == "simcse":
        from tweetkit.tasks.contrastive import SimCSETask

        return SimCSETask(*packing, temperature=config.temperature)
    from tweetkit.tasks.mlm import MLMTask

    return MLMTask(*packing, mask_prob=config.mask_prob)


def anchored(task, model, weights: dict, log):
    """`task` with the anchor to the model's encoder as it is now: the starting weights."""
    from tweetkit.tasks.anchor import AnchoredTask
    from tweetkit.tasks.mlm import split_mlm_model

    log("anchored to the starting encoder: " + ", ".join(f"{kind} x {weight:g}" for kind, weight in weights.items()))
    return AnchoredTask(task, split_mlm_model(getattr(model, "mlm", model))[0], weights)


def write_best(output: str, keeper, log) -> None:
    """DIR/validation_metrics.json: the step and validation figures of the weights kept."""
    import json

    from tweetkit.train.best import METRICS_FILE

    os.makedirs(output, exist_ok=True)
    best = keeper.state()
    with open(os.path.join(output, METRICS_FILE), "w", encoding="utf-8") as handle:
        json.dump({"metric": "loss", "best_step": best["step"], **best["metrics"]}, handle, indent=2)
    log(f"kept the weights of step {best['step']} (validation loss {best['metrics'].get('validation_loss')})")


def pretraining_model(setup: dict, tok, seed: int, head_warmup_steps: int, log):
    """(model, phases): a fresh RoBERTa of --model-config, or --init-from moved to the
    tokenizer's vocabulary; phases is the head warm-up (continued.HeadWarmup) or None."""
    from tweetkit.modeling import build_model

    new = None
    if setup["init_from"]:
        from tweetkit.train.continued import load_for_continued_pretraining

        model, new = load_for_continued_pretraining(setup["init_from"], tok, setup["new_token_init"], seed, log)
    else:
        model = build_model(setup["model"], tok, seed)
    if setup["freeze_base"]:
        # The output projection is tied to the frozen input embeddings: what trains is
        # the head's transform and bias, and no gradient flows into the encoder at all.
        model.base_model.requires_grad_(False)
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"base model frozen: training {trained:,} head parameters")
    phases = None
    if head_warmup_steps and new is not None:
        from tweetkit.train.continued import HeadWarmup

        phases = HeadWarmup(model, head_warmup_steps, new["head"], new["new_ids"])
        log(
            f"head warm-up: {phases.parameters_warmed():,} parameters ({', '.join(sorted(phases.warm))}; "
            f"{len(new['new_ids']):,} new vocabulary rows) train alone for {head_warmup_steps} steps, then everything"
        )
    if setup.get("objective") == "tsdae":
        from tweetkit.tasks.tsdae import TSDAEModel, build_decoder

        model = TSDAEModel(model, build_decoder(model, seed))
        log("TSDAE decoder: the encoder's architecture with cross-attention to the pooled tweet (training only)")
    return model, phases


def model_offset(model, setup: dict) -> int:
    """The model's position offset, after checking --max-length fits its positions."""
    from tweetkit.errors import ConfigError
    from tweetkit.modeling import position_offset

    limit = model.config.max_position_embeddings - position_offset(model)
    if setup["max_length"] > limit:
        raise ConfigError(f"--max-length {setup['max_length']} exceeds the model's {limit} positions")
    return position_offset(model)


def run_settings(setup: dict, tok, model) -> dict:
    """What makes two runs the same run: compared with a checkpoint's on --resume."""
    shape = (
        "model_type",
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
    )
    absolute = lambda path: os.path.abspath(path) if path and os.path.exists(path) else path  # noqa: E731
    return {
        **setup,
        "train": [absolute(p) for p in setup["train"]],
        "validation": absolute(setup["validation"]),
        "tokenizer": absolute(setup["tokenizer"]),
        "model": absolute(setup["model"]),
        "init_from": absolute(setup["init_from"]),
        "vocab_size": len(tok),
        "shape": {key: getattr(model.config, key, None) for key in shape},
    }
