"""tweetkit pretrain: RoBERTa-style MLM from scratch or continued (or SimCSE or TSDAE on a
sentence encoder, optionally anchored to its start); the recipe: tweetkit.recipes.pretrain."""

from __future__ import annotations

import click

from tweetkit.options import FIELD, ON_ERROR, QUIET, config_options, output_option, threads_option, train_options
from tweetkit.recipes.pretrain import PretrainConfig

TRAIN_FLAGS = [
    "max_steps", "epochs", "batch_size", "micro_batch_size", "lr", "weight_decay", "betas", "eps", "warmup_steps",
    "head_warmup_steps", "max_grad_norm", "precision", "save_every", "keep_checkpoints", "eval_every", "log_every",
    "resume", "overwrite", "seed", "device", "dist_timeout", "compile",
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
    help="Train only the masked-LM head, the base model frozen: warms up a new head (MiniLM ships none) before "
    "continued pretraining, so its random start does not disturb the encoder.",
)
@click.option(
    "--keep-best",
    is_flag=True,
    help="Save the weights of the lowest validation loss of the objective (scored every --eval-every steps and at "
    "the end) instead of the last; its step and loss go to DIR/validation_metrics.json.",
)
@FIELD
@ON_ERROR
@click.option(
    "--max-length", type=click.IntRange(8, 512), default=128, show_default=True, help="Tokens per packed row."
)
@click.option(
    "--mask-prob",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=PretrainConfig.mask_prob,
    show_default=True,
    help="The share of tokens masked (of those: 80% <mask>, 10% a random token, 10% unchanged).",
)
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
def command(train_files, **settings):
    """Pretrain (or continue pretraining) a masked language model on tweets.

    Tweets are packed into full rows with block-diagonal attention, masked
    dynamically (80/10/10), and the vocabulary projection runs only at masked
    positions.  With --objective simcse or tsdae, a pretrained sentence encoder is adapted
    by unsupervised SimCSE or TSDAE on the same packed rows instead; --anchor holds it
    near where it started.  Metrics go to stdout as JSON lines.  Run under torchrun for DDP.
    """
    from tweetkit.recipes.pretrain import run

    # the other flags are named as PretrainConfig's fields: train, flags, tokenizer, init_from, ...
    run(PretrainConfig(train_files=list(train_files), **settings))
