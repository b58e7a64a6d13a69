"""tweetkit pretrain: RoBERTa-style MLM from scratch or continued (or SimCSE or TSDAE on a
sentence encoder, optionally anchored to its start), packed, distributed, resumable."""

from __future__ import annotations

import os

import click

from tweetkit.options import (
    FIELD,
    ON_ERROR,
    QUIET,
    config_options,
    log_for,
    output_option,
    threads_option,
    train_options,
)

TRAIN_FLAGS = [
    "max_steps", "epochs", "batch_size", "micro_batch_size", "lr", "weight_decay", "betas", "eps", "warmup_steps",
    "head_warmup_steps", "max_grad_norm", "precision", "save_every", "keep_checkpoints", "eval_every", "log_every", "resume", "overwrite",
    "seed", "device", "dist_timeout", "compile",
]  # fmt: skip


@click.command(
    "pretrain",
    epilog="""\b
Examples:
  tweetkit pretrain --train corpus.train.jsonl --validation corpus.test.jsonl --tokenizer tok/ -o mlm/ \\
      --model-config tiny --max-steps 2000 --batch-size 64 --precision bf16
  tweetkit pretrain --train tweets.jsonl --tokenizer tok/ --init-from path/to/minilm -o minilm-tweets/
  torchrun --nproc_per_node=2 -m tweetkit pretrain --train corpus.jsonl --tokenizer tok/ -o mlm/
  tweetkit pretrain --train task.train.jsonl --tokenizer minilm/ --init-from minilm/ -o minilm-simcse/ \\
      --objective simcse --lr 3e-5          # a sentence encoder adapted on its own objective
  tweetkit pretrain --train tweets.jsonl --tokenizer minilm/ --init-from minilm/ -o minilm-anchored/ \\
      --anchor 1.0 --anchor-kind distill    # MLM, each tweet's embedding held near MiniLM's
  tweetkit pretrain --train tweets.jsonl --tokenizer minilm/ --init-from minilm/ -o minilm-tsdae/ \\
      --objective tsdae --lr 3e-5           # the denoising auto-encoder of sentence-transformers
  tweetkit pretrain ... -o mlm/ --resume         # continue from mlm/checkpoint-N
  tweetkit pretrain --config mlm/tweetkit_train_config.json -o mlm2/   # the same run again""",
)
@threads_option
@config_options
@click.option(
    "--train",
    "train_files",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="JSONL training file(s); repeat the flag.",
)
@click.option(
    "--validation", type=click.Path(dir_okay=False), help="JSONL validation file: masked-LM loss and accuracy."
)
@click.option("--tokenizer", required=True, help="Tokenizer directory (train-bpe output) or name.")
@output_option("Output directory (model, tokenizer, checkpoints).")
@click.option(
    "--model-config", default="tiny", show_default=True, help="tiny | small | base | PATH.json (RobertaConfig fields)."
)
@click.option("--init-from", help="Continue pretraining this model (directory or name) instead of a fresh one.")
@click.option(
    "--new-token-init",
    type=click.Choice(["mean", "random"]),
    default="mean",
    show_default=True,
    help="With --init-from and a new vocabulary: rows of new pieces from the mean of their old pieces, or random.",
)
@click.option(
    "--freeze-base",
    is_flag=True,
    help="Train only the masked-LM head, the base model frozen: warms up a new head (MiniLM ships none) before continued pretraining, so its random start does not disturb the encoder.",
)
@click.option(
    "--keep-best",
    is_flag=True,
    help="Save the weights of the lowest validation loss of the objective (scored every --eval-every steps and at the end) "
    "instead of the last; its step and loss go to DIR/validation_metrics.json.",
)
@FIELD
@ON_ERROR
@click.option(
    "--max-length", type=click.IntRange(8, 512), default=128, show_default=True, help="Tokens per packed row."
)
@click.option("--mask-prob", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.15, show_default=True)
@click.option(
    "--objective",
    type=click.Choice(["mlm", "simcse", "tsdae"]),
    default="mlm",
    show_default=True,
    help="mlm: masked language modelling. simcse: unsupervised SimCSE (each tweet twice under dropout, "
    "InfoNCE over the micro-batch, mean pooling), for continuing a sentence encoder such as MiniLM on its own "
    "objective; needs --init-from. tsdae: the denoising auto-encoder (delete --deletion of each tweet's tokens, "
    "reconstruct the tweet from its mean-pooled embedding with a training-only decoder).",
)
@click.option(
    "--deletion",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.6,
    show_default=True,
    help="--objective tsdae: the share of each tweet's tokens deleted.",
)
@click.option(
    "--anchor",
    metavar="WEIGHT",
    help="With --init-from: add WEIGHT x a pull toward the starting encoder to the loss (see --anchor-kind); "
    "with --anchor-kind both, L2SP,DISTILL weighs each.",
)
@click.option(
    "--anchor-kind",
    type=click.Choice(["l2sp", "distill", "both"]),
    help="l2sp: sum ||theta - theta_start||^2 over the encoder's weights. distill: the mean squared difference "
    "of each tweet's mean-pooled embedding and the frozen starting encoder's, on the same batch (one more "
    "forward, no backward). [default: distill, which holds the sentence embedding itself]",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0, min_open=True),
    default=0.05,
    show_default=True,
    help="--objective simcse: the softmax temperature of the cosine similarities.",
)
@train_options(
    TRAIN_FLAGS,
    defaults={"max_steps": None, "keep_checkpoints": 2},
    helps={
        "max_steps": "Optimizer steps [default: from --epochs]; 0 writes the initialised model and stops.",
        "batch_size": "Global batch in packed rows, whatever the number of processes.",
        "keep_checkpoints": "Keep the N newest checkpoints (0: all); two let --resume fall back from a corrupt one.",
        "warmup_steps": "Linear warm-up steps before linear decay to 0 [default: 6% of the steps].",
    },
)
@click.option("--cache-dir", default=None, help="Tokenized-corpus cache [default: ~/.cache/tweetkit].")
@QUIET
def command(
    flags,
    train,
    train_files,
    validation,
    tokenizer,
    output,
    model_config,
    init_from,
    new_token_init,
    freeze_base,
    keep_best,
    field,
    on_error,
    max_length,
    mask_prob,
    objective,
    deletion,
    anchor,
    anchor_kind,
    temperature,
    cache_dir,
    quiet,
):
    """Pretrain (or continue pretraining) a masked language model on tweets.

    Tweets are packed into full rows with block-diagonal attention, masked
    dynamically (80/10/10), and the vocabulary projection runs only at masked
    positions.  With --objective simcse or tsdae, a pretrained sentence encoder is adapted
    by unsupervised SimCSE or TSDAE on the same packed rows instead; --anchor holds it
    near where it started.  Metrics go to stdout as JSON lines.  Run under torchrun for DDP.
    """
    from tweetkit.errors import UsageError
    from tweetkit.io import StreamOptions

    if keep_best and not validation:
        raise UsageError("--keep-best needs --validation: the best weights are those of the lowest validation loss")
    if train["head_warmup_steps"] and not init_from:
        raise UsageError(
            "--head-warmup-steps needs --init-from: a model trained from scratch has no new head to warm up"
        )
    check_objective(objective, init_from, train["head_warmup_steps"], freeze_base)
    weights = check_anchor(anchor, anchor_kind, init_from, freeze_base)
    setup = dict(
        train=list(train_files), validation=validation, field=field, on_error=on_error, tokenizer=tokenizer, model=init_from or model_config,
        init_from=init_from, new_token_init=new_token_init if init_from else None, freeze_base=freeze_base, max_length=max_length, mask_prob=mask_prob,
    )  # fmt: skip
    if keep_best:
        setup["keep_best"] = True  # only when asked: runs before the flag existed resume unchanged
    if objective == "simcse":  # likewise
        setup.update(objective=objective, temperature=temperature)
    if objective == "tsdae":
        setup.update(objective=objective, deletion=deletion)
    if weights:
        setup["anchor"] = weights
    cache = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "tweetkit")
    run_pretraining(
        setup, train, flags, output, StreamOptions(field=field, on_error=on_error, quiet=quiet), cache, quiet
    )


def check_objective(objective: str, init_from, head_warmup_steps: int, freeze_base: bool) -> None:
    """SimCSE and TSDAE train the encoder and no MLM head; SimCSE adapts a pretrained one."""
    from tweetkit.errors import UsageError

    name = {"simcse": "SimCSE", "tsdae": "TSDAE"}.get(objective)
    if name is None:
        return
    for given, flag in ((objective == "simcse" and not init_from, "without --init-from: SimCSE adapts a pretrained encoder"),
                        (head_warmup_steps, f"with --head-warmup-steps: {name} trains no head"),
                        (freeze_base, f"with --freeze-base: {name} trains the encoder, not a head")):  # fmt: skip
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


def run_pretraining(setup: dict, train: dict, flags: dict, output: str, stream, cache: str, quiet: bool) -> None:
    """The recipe: tokenize (rank 0 first, the others read its cache), build or load the
    model, train on the shared core, save the model beside its tokenizer and config."""
    import torch

    from tweetkit.modeling import load_tokenizer, save_model
    from tweetkit.output_dir import prepare_output_dir
    from tweetkit.train import distributed
    from tweetkit.train.best import BestKeeper
    from tweetkit.train.config import TrainConfig
    from tweetkit.train.loop import train as train_loop

    max_steps = train.pop("max_steps")
    dist = distributed.setup(train["device"], train["dist_timeout"])
    prepare_output_dir(
        output, resume=train["resume"], overwrite=train["overwrite"], remove=dist.is_main
    )  # every rank checks, rank 0 removes
    dist.barrier()
    log = log_for("pretrain", quiet or not dist.is_main)
    stream.quiet = stream.quiet or not dist.is_main
    try:
        tok = load_tokenizer(setup["tokenizer"])
        train_corpus, validation_corpus = tokenize_corpora(setup, tok, stream, cache, dist, log)
        model, phases = pretraining_model(setup, tok, train["seed"], train["head_warmup_steps"], log)
        task = pretraining_task(setup, train_corpus, validation_corpus, tok, train["seed"], model_offset(model, setup))
        if setup.get("anchor"):
            task = anchored(task, model, setup["anchor"], log)
        log(
            f"{len(train_corpus):,} tweets in {task.num_examples():,} packed rows of <= {setup['max_length']} tokens; "
            f"{sum(p.numel() for p in model.parameters()):,} parameters; {dist.world} process(es) of {torch.get_num_threads()} thread(s)"
        )
        config = TrainConfig(
            **train,
            max_steps=max_steps or 0,
            output_dir=output,
            run=run_settings(setup, tok, model),
            model_config=model.config.to_diff_dict(),
            flags=flags,
        )
        keeper = BestKeeper("loss", lower_is_better=True) if setup.get("keep_best") else None  # validation MLM loss
        if max_steps != 0:
            train_loop(
                model,
                task,
                config,
                dist,
                on_save=lambda m, path: tok.save_pretrained(path),
                keeper=keeper,
                log=log,
                phases=phases,
            )
        if dist.is_main:  # with --max-steps 0: the initialised model, untrained, for inspection
            if keeper is not None and keeper.weights is not None:
                keeper.load_best_into(model)
                write_best(output, keeper, log)
            save_model(getattr(model, "mlm", model), tok, output)  # TSDAE's decoder stays in the checkpoints
            config.save(output)
            log(f"model written to {output}")
        dist.barrier()  # leave together: a process that tears its group down while another still writes can abort
    finally:
        distributed.teardown()


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


def pretraining_task(setup: dict, train_corpus, validation_corpus, tok, seed: int, offset: int):
    """The objective on packed rows: MLM, or SimCSE or TSDAE with --objective."""
    if setup.get("objective") == "tsdae":
        from tweetkit.tasks.tsdae import TSDAETask

        return TSDAETask(train_corpus, validation_corpus, tok, setup["max_length"], seed, offset, setup["deletion"])
    if setup.get("objective") == "simcse":
        from tweetkit.tasks.contrastive import SimCSETask

        return SimCSETask(train_corpus, validation_corpus, tok, setup["max_length"], seed, offset, setup["temperature"])
    from tweetkit.tasks.mlm import MLMTask

    return MLMTask(train_corpus, validation_corpus, tok, setup["max_length"], setup["mask_prob"], seed, offset)


def anchored(task, model, weights: dict, log):
    """`task` with the anchor to the model's encoder as it is now: the starting weights."""
    from tweetkit.tasks.anchor import AnchoredTask
    from tweetkit.tasks.mlm import split_mlm_model

    log("anchored to the starting encoder: " + ", ".join(f"{kind} x {weight:g}" for kind, weight in weights.items()))
    return AnchoredTask(task, split_mlm_model(getattr(model, "mlm", model))[0], weights)


def write_best(output: str, keeper, log) -> None:
    """DIR/validation_metrics.json: the step and validation figures of the weights kept."""
    import json

    os.makedirs(output, exist_ok=True)
    best = keeper.state()
    with open(os.path.join(output, "validation_metrics.json"), "w", encoding="utf-8") as handle:
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
        log(
            f"base model frozen: training {sum(p.numel() for p in model.parameters() if p.requires_grad):,} head parameters"
        )
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
