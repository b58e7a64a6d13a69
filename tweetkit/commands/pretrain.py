"""tweetkit pretrain: RoBERTa-style MLM from scratch or continued, packed, distributed, resumable."""

from __future__ import annotations

import os
import sys

import click


@click.command(
    "pretrain",
    epilog="""\b
Examples:
  tweetkit pretrain --train corpus.train.jsonl --validation corpus.test.jsonl --tokenizer tok/ -o mlm/ \\
      --model-config tiny --max-steps 2000 --batch-size 64 --precision bf16
  tweetkit pretrain --train tweets.jsonl --tokenizer tok/ --init-from path/to/minilm -o minilm-tweets/
  torchrun --nproc_per_node=2 -m tweetkit pretrain --train corpus.jsonl --tokenizer tok/ -o mlm/
  tweetkit pretrain ... -o mlm/ --resume         # continue from mlm/checkpoint-N""",
)
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
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Output directory (model, tokenizer, checkpoints).",
)
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
@click.option("--field", default="text", show_default=True)
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True)
@click.option(
    "--max-length", type=click.IntRange(8, 512), default=128, show_default=True, help="Tokens per packed row."
)
@click.option("--mask-prob", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.15, show_default=True)
@click.option(
    "--max-steps",
    type=click.IntRange(min=0),
    default=None,
    help="Optimizer steps (0: write the initialised model and stop).",
)
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Global batch in packed rows."
)
@click.option(
    "--micro-batch-size",
    type=click.IntRange(min=0),
    default=0,
    help="Rows per forward pass per process [default: all of its share].",
)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--weight-decay", type=float, default=0.01, show_default=True)
@click.option("--betas", default="0.9,0.98", show_default=True)
@click.option("--eps", type=float, default=1e-6, show_default=True)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=0, help="[default: 6% of the steps]")
@click.option("--max-grad-norm", type=float, default=1.0, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option(
    "--save-every",
    type=click.IntRange(min=0),
    default=0,
    help="Checkpoint every N steps [default: at the end, and on Ctrl-C or SIGTERM].",
)
@click.option(
    "--keep-checkpoints",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Keep the N newest checkpoints (0: all); two let --resume fall back from a corrupt one.",
)
@click.option("--eval-every", type=click.IntRange(min=0), default=0)
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in -o that has the same settings.")
@click.option(
    "--overwrite", is_flag=True, help="Replace a previous run in -o (its model and checkpoints are removed first)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--cache-dir", default=None, help="Tokenized-corpus cache [default: ~/.cache/tweetkit].")
@click.option("-q", "--quiet", is_flag=True)
def command(
    train_files,
    validation,
    tokenizer,
    output,
    model_config,
    init_from,
    new_token_init,
    freeze_base,
    field,
    on_error,
    max_length,
    mask_prob,
    max_steps,
    epochs,
    batch_size,
    micro_batch_size,
    lr,
    weight_decay,
    betas,
    eps,
    warmup_steps,
    max_grad_norm,
    precision,
    save_every,
    keep_checkpoints,
    eval_every,
    log_every,
    resume,
    overwrite,
    seed,
    device,
    cache_dir,
    quiet,
):
    """Pretrain (or continue pretraining) a masked language model on tweets.

    Tweets are packed into full rows with block-diagonal attention, masked
    dynamically (80/10/10), and the vocabulary projection runs only at masked
    positions.  Metrics go to stdout as JSON lines.  Run under torchrun for DDP.
    """
    from tweetkit.errors import ConfigError
    from tweetkit.io import StreamOptions, prepare_output_dir
    from tweetkit.modeling import build_model, load_tokenizer, position_offset, save_model
    from tweetkit.tasks.mlm import MLMTask, tokenize_corpus
    from tweetkit.train import distributed
    from tweetkit.train.config import TrainConfig
    from tweetkit.train.loop import train

    try:
        beta_values = tuple(float(b) for b in betas.split(","))
        assert len(beta_values) == 2
    except (ValueError, AssertionError):
        raise click.BadParameter("expected two numbers, e.g. 0.9,0.98", param_hint="--betas") from None
    dist = distributed.setup(device)
    prepare_output_dir(
        output, resume=resume, overwrite=overwrite, remove=dist.is_main
    )  # every rank checks, rank 0 removes
    dist.barrier()
    log = (
        (lambda message: None)
        if quiet or not dist.is_main
        else (lambda message: print(f"tweetkit pretrain: {message}", file=sys.stderr))
    )
    try:
        tok = load_tokenizer(tokenizer)
        cache = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "tweetkit")
        stream = StreamOptions(field=field, on_error=on_error, quiet=quiet or not dist.is_main)
        # Rank 0 tokenizes and caches; the others wait, then memory-map the cache.
        if dist.is_main:
            train_corpus = tokenize_corpus(train_files, tok, stream, cache, log)
        dist.barrier()
        if not dist.is_main:
            train_corpus = tokenize_corpus(train_files, tok, stream, cache, log)
        if len(train_corpus) == 0:
            raise ConfigError("the training corpus is empty")
        validation_corpus = tokenize_corpus([validation], tok, stream, cache, log) if validation else None

        if init_from:
            from tweetkit.train.continued import load_for_continued_pretraining

            model = load_for_continued_pretraining(init_from, tok, new_token_init, seed, log)
        else:
            model = build_model(model_config, tok, seed)
        if freeze_base:
            # The output projection is tied to the frozen input embeddings: what trains is
            # the head's transform and bias, and no gradient flows into the encoder at all.
            model.base_model.requires_grad_(False)
            log(
                f"base model frozen: training {sum(p.numel() for p in model.parameters() if p.requires_grad):,} head parameters"
            )
        limit = model.config.max_position_embeddings - position_offset(model)
        if max_length > limit:
            raise ConfigError(f"--max-length {max_length} exceeds the model's {limit} positions")
        task = MLMTask(train_corpus, validation_corpus, tok, max_length, mask_prob, seed, position_offset(model))
        log(
            f"{len(train_corpus):,} tweets in {task.num_examples():,} packed rows of <= {max_length} tokens; {sum(p.numel() for p in model.parameters()):,} parameters; {dist.world} process(es)"
        )
        # What makes two runs the same run: compared with a checkpoint's on --resume.
        settings = dict(
            train=[os.path.abspath(p) for p in train_files],
            validation=os.path.abspath(validation) if validation else None,
            field=field,
            on_error=on_error,
            tokenizer=os.path.abspath(tokenizer) if os.path.exists(tokenizer) else tokenizer,
            vocab_size=len(tok),
            model=init_from or model_config,
            new_token_init=new_token_init if init_from else None,
            freeze_base=freeze_base,
            max_length=max_length,
            mask_prob=mask_prob,
            shape={
                k: getattr(model.config, k, None)
                for k in (
                    "model_type",
                    "vocab_size",
                    "hidden_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "intermediate_size",
                    "max_position_embeddings",
                )
            },
        )
        config = TrainConfig(
            output_dir=output,
            seed=seed,
            batch_size=batch_size,
            micro_batch_size=micro_batch_size,
            max_steps=max_steps or 0,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            betas=beta_values,
            eps=eps,
            warmup_steps=warmup_steps,
            max_grad_norm=max_grad_norm,
            precision=precision,
            save_every=save_every,
            keep_checkpoints=keep_checkpoints,
            eval_every=eval_every,
            log_every=log_every,
            resume=resume,
            device=device,
            command_line=sys.argv,
            run=settings,
            model_config=model.config.to_diff_dict(),
        )
        if max_steps != 0:
            train(model, task, config, dist, on_save=lambda m, path: tok.save_pretrained(path), log=log)
        if dist.is_main:  # with --max-steps 0: the initialised model, untrained, for inspection
            save_model(model, tok, output)
            config.save(output)
            log(f"model written to {output}")
    finally:
        distributed.teardown()
