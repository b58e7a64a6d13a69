"""Does continued pretraining pay off, and from how many tokens?  The adaptation curve.

    python bench/adaptation.py [--budgets 0,300000,1200000,4800000] [--text tapt|dapt|both]
        [--objective mlm|simcse|tsdae] [--anchor W [--anchor-kind l2sp|distill|both]]
        [--merge-alphas 0,0.25,0.5,0.75,1] [--head-warmup 0.1] [--no-extend] [--continue-lr 1e-4]
        [--seeds 1,2,3] [--name adaptation]
    python bench/adaptation.py --smoke        # every step at toy size (about 2 minutes on 2 CPU cores)
    python bench/adaptation.py --smoke --anchor 0.1 --anchor-kind both --merge-alphas 0,0.5,1   # the levers too

For each task (SemEval-2017 4A, irony) and each continued-pretraining budget (tokens =
steps x batch x 128), the packaged MiniLM is adapted with `tweetkit pretrain --init-from`
(the levers below), fine-tuned with every seed and scored on test; (c) - (b) is taken
against MiniLM fine-tuned directly with the same seed.  Levers, each a flag:
  --text        tapt: the task's own train text (Don't Stop Pretraining's TAPT, many epochs
                at these budgets); dapt: the shared tweet corpus of scripts/repro.py; both
  --objective   mlm, or simcse: MiniLM's own contrastive objective (`pretrain --objective
                simcse`; each row is encoded twice per step, so a budget costs more minutes),
                or tsdae: the denoising auto-encoder (`pretrain --objective tsdae`)
  --anchor W, --anchor-kind   hold the encoder near MiniLM while it adapts (`pretrain --anchor`):
                L2-SP on the weights, distillation of the tweets' embeddings, or both
  --merge-alphas  also fine-tune (1 - alpha) MiniLM + alpha adapted for each alpha (`tweetkit
                merge`), paired with (b) by seed like (c): each budget reports per alpha
  --head-warmup share of each budget's steps spent training only the new MLM head and new
                vocabulary rows first (`pretrain --head-warmup-steps`, LP-FT)
  --extend / --no-extend   the vocabulary extension (`train-bpe --extend`)
  --continue-lr, --precision (bf16 where the CPU has it natively: more tokens per minute)
  --keep-best / --no-keep-best   the checkpoint of the lowest validation MLM loss on the
                task's validation text (`pretrain --keep-best`), scored 5 times per run
Every step is a `tweetkit` command run through scripts/repro.py's helpers (the corpus, the
task splits, fine-tuning and scoring are repro's own, so row (b) is shared with `make
repro-*` when the settings agree), and is skipped when its output exists: an interrupted
run resumes.  Writes RESULTS/NAME.json, RESULTS/NAME.{png,svg} (the curve),
RESULTS/NAME-tsne.{png,svg} (MiniLM's and the largest budget's sentence embeddings of the
embedding task's test tweets, `tweetkit embed` + `tweetkit plot --embeddings`) and
RESULTS/NAME.md, the section scripts/results_md.py puts into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
import repro  # noqa: E402
import results_md  # noqa: E402
from repro import TWEETKIT, log, sh, slug, step  # noqa: E402

TASKS = ("semeval17", "irony")
ROW = 128  # tokens per packed row (pretrain --max-length)
# --smoke: the first lines of each file it reads, and toy schedules.
SMOKE_SLICES = {"semeval2017/train.jsonl": 300, "semeval2017/test.jsonl": 40, "tweeteval/irony/train.jsonl": 60,
                "tweeteval/irony/validation.jsonl": 24, "tweeteval/irony/test.jsonl": 40}  # fmt: skip
SMOKE = dict(seeds="1", budgets="0,1024", train_limit=48, eval_limit=24, epochs="1", pretrain_batch_size="4",
             text="tapt", extend=False, keep_best=False, max_points=40, batch_size="8")  # fmt: skip


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--work", default="repro-work", help="shared with scripts/repro.py: corpus and (b) reused")
    parser.add_argument("--results", default="results")
    parser.add_argument("--name", default="adaptation", help="RESULTS/NAME.json, .png, .svg, .md")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--model", default=None, help="base model [default: the packaged MiniLM]")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--budgets", default="0,300000,1200000,4800000", help="continued-pretraining tokens")
    parser.add_argument("--text", choices=["tapt", "dapt", "both"], default="tapt")
    parser.add_argument("--objective", choices=["mlm", "simcse", "tsdae"], default="mlm")
    parser.add_argument("--temperature", default="0.05", help="--objective simcse")
    parser.add_argument("--deletion", default="0.6", help="--objective tsdae")
    parser.add_argument("--anchor", default=None, help="pretrain --anchor WEIGHT (L2SP,DISTILL with both)")
    parser.add_argument("--anchor-kind", choices=["l2sp", "distill", "both"], default="distill")
    parser.add_argument("--merge-alphas", default=None, help="e.g. 0,0.25,0.5,0.75,1: interpolated models too")
    # The defaults are the best measured so far on SemEval-2017 at 1.2M tokens (RESULTS.md):
    # with the +2,000-piece vocabulary, (c) - (b) = -1.30 +- 0.95 AvgRec; without it, -0.28 +- 0.22.
    parser.add_argument("--head-warmup", type=float, default=0.1, help="share of each budget's steps (0: none)")
    parser.add_argument("--extend", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--extend-pieces", default="2000")
    parser.add_argument("--keep-best", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--continue-lr", default="1e-4")
    parser.add_argument("--pretrain-batch-size", default="32", help="packed rows of 128 tokens per step")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--lr", default="5e-5", help="fine-tuning")
    parser.add_argument("--epochs", default=None, help="fine-tuning [default: repro's per task]")
    parser.add_argument("--batch-size", default="32", help="fine-tuning")
    parser.add_argument("--train-limit", type=int, default=8000)
    parser.add_argument("--eval-limit", type=int, default=0, help="first N validation and test examples (0: all)")
    parser.add_argument("--embed-task", default="irony", help="whose test tweets the t-SNE picture shows")
    parser.add_argument("--max-points", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true", help="toy sizes: every step (about 2 minutes on 2 CPU cores)")
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    args.model = args.model or repro.minilm_path()
    args.data, args.work = os.path.abspath(args.data), os.path.abspath(args.work)
    if args.smoke:
        args.data = smoke_data(args.data, os.path.join(args.work, "smoke-data"))
    args.tiny_lr = args.tiny_epochs = None  # repro.run_row reads them for its tiny row only
    return args


def smoke_data(data, out):
    """The first lines of the files a smoke run reads, as a data directory of their own."""
    for relative, lines in SMOKE_SLICES.items():
        target = os.path.join(out, relative)
        if not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(os.path.join(data, relative), encoding="utf-8") as source:
                repro.write_jsonl(target, [json.loads(line) for _, line in zip(range(lines), source)])
    return out


def limited_paths(args, target, paths):
    """The task's splits; with --eval-limit, validation and test cut to their first N lines,
    in a directory of their own (so no score of a cut test set is ever read as a full one)."""
    if not args.eval_limit:
        return paths
    out = os.path.join(os.path.dirname(paths["train"]), f"eval{args.eval_limit}")
    os.makedirs(out, exist_ok=True)
    cut = {}
    for name, path in paths.items():
        cut[name] = os.path.join(out, f"{name}.jsonl")
        lines = repro.read_jsonl(path)
        step(
            cut[name],
            lambda n=name, lines=lines: repro.write_jsonl(cut[n], lines if n == "train" else lines[: args.eval_limit]),
        )
    return cut


def steps_of(args, tokens: int) -> int:
    return math.ceil(tokens / (int(args.pretrain_batch_size) * ROW))


def adapted_model(args, target, paths, tokens, corpus):
    """(model directory, seconds): MiniLM after `tokens` of continued pretraining with the levers.
    With no tokens and no vocabulary extension that is MiniLM itself: (c) is (b)."""
    steps = steps_of(args, tokens)
    if steps == 0 and not args.extend:
        return args.model, 0.0
    texts = {"tapt": [paths["train"]], "dapt": [corpus], "both": [corpus, paths["train"]]}[args.text]
    source = (
        f"tapt-{target}-n{args.train_limit}"
        if args.text == "tapt"
        else ("dapt" if args.text == "dapt" else f"both-{target}-n{args.train_limit}")
    )
    base = repro.model_slug(args)
    tok = args.model
    if args.extend:
        os.makedirs(os.path.join(args.work, "adaptation"), exist_ok=True)
        tok = os.path.join(args.work, "adaptation", slug(base, source, "tokenizer", f"x{args.extend_pieces}"))
        extend = TWEETKIT + [
            "train-bpe",
            *texts,
            "--extend",
            args.model,
            "--vocab-size",
            args.extend_pieces,
            "-o",
            tok,
            "-q",
        ]
        step(tok, lambda: sh(extend, stdout=tok + ".json"))
    simcse = args.objective == "simcse"
    warm = max(1, round(args.head_warmup * steps)) if args.head_warmup and steps and args.objective == "mlm" else 0
    best = args.keep_best and steps >= 5
    model = os.path.join(
        args.work,
        "adaptation",
        slug(base, source, objective_slug(args), f"x{args.extend_pieces}" if args.extend else "x0",
             f"head{warm}" if warm else "", anchor_slug(args), f"{steps}x{args.pretrain_batch_size}",
             f"lr{args.continue_lr}", args.precision, "best" if best else ""),
    )  # fmt: skip
    command = TWEETKIT + ["pretrain", *[a for t in texts for a in ("--train", t)], "--tokenizer", tok, "--init-from",
                          args.model, "-o", model, "--max-steps", steps, "--batch-size", args.pretrain_batch_size,
                          "--lr", args.continue_lr, "--precision", args.precision, "--log-every", "5", "--resume",
                          "--save-every", max(5, steps // 10), "--cache-dir", os.path.join(args.work, "cache"),
                          "-q"]  # fmt: skip
    if warm:
        command += ["--head-warmup-steps", warm]
    if simcse:
        command += ["--objective", "simcse", "--temperature", args.temperature]
    if args.objective == "tsdae":
        command += ["--objective", "tsdae", "--deletion", args.deletion]
    if args.anchor:
        command += ["--anchor", args.anchor, "--anchor-kind", args.anchor_kind]
    if best:
        command += ["--validation", paths["validation"], "--eval-every", max(1, steps // 5), "--keep-best"]
    os.makedirs(os.path.dirname(model), exist_ok=True)
    step(model, lambda: sh(command, stdout=model + ".metrics.jsonl"))
    return model, repro.seconds_of(model) + (repro.seconds_of(tok) if args.extend else 0.0)


def objective_slug(args) -> str:
    return {"simcse": f"simcse-t{args.temperature}", "tsdae": f"tsdae-d{args.deletion}"}.get(args.objective, "")


def anchor_slug(args) -> str:
    return slug("anchor", args.anchor_kind, args.anchor) if args.anchor else ""


def merged_rows(args, target, paths, adapted, direct, metric):
    """Each --merge-alphas model between MiniLM and `adapted`, fine-tuned with every seed and
    paired with (b) by seed: one entry per alpha."""
    rows = []
    for alpha in (float(a) for a in args.merge_alphas.split(",")):
        merged = f"{adapted}-merge{alpha:g}"
        merge = TWEETKIT + ["merge", "--start", args.model, "--adapted", adapted, "--alpha", f"{alpha:g}", "-o",
                            merged, "-q"]  # fmt: skip
        step(merged, lambda merge=merge, merged=merged: sh(merge, stdout=merged + ".json"))
        row = repro.run_row(args, target, "minilm-tweets", merged, paths, args.work)
        mean, std, diffs = results_md.paired(direct["test"][metric], row["test"][metric])
        rows.append({"alpha": alpha, "model": os.path.basename(merged), "test": row["test"],
                     "finetune_minutes": row["finetune_minutes"],
                     "paired": {"mean": round(mean, 2), "std": round(std, 2),
                                "values": [round(d, 2) for d in diffs]}})  # fmt: skip
        log(
            f"{target}, {os.path.basename(adapted)} merged at alpha {alpha:g}: "
            f"(c) - (b) = {mean:+.2f} ± {std:.2f} {metric}"
        )
    return rows


def merge_table(result) -> list[str]:
    """Markdown: (c) - (b) per budget and alpha, per task (with --merge-alphas)."""
    lines = []
    for target, task in result["tasks"].items():
        merged = [b for b in task["budgets"] if b.get("merged")]
        if not merged:
            continue
        alphas = [m["alpha"] for m in merged[0]["merged"]]
        lines += ["", f"Weight interpolation, {results_md.TITLES.get(target, target)}: (c) − (b) "
                  f"{results_md.METRIC_NAMES.get(task['metric'], task['metric'])} by alpha (0: MiniLM, 1: adapted)", "",
                  "| tokens | " + " | ".join(f"α = {a:g}" for a in alphas) + " |",
                  "|---:|" + "---|" * len(alphas)]  # fmt: skip
        for budget in merged:
            lines.append(
                f"| {budget['tokens']:,} | "
                + " | ".join(results_md.signed(m["paired"]) for m in budget["merged"])
                + " |"
            )
    return lines


def best_validation(model):
    try:
        with open(os.path.join(model, "validation_metrics.json")) as handle:
            summary = json.load(handle)
        return {"best_step": summary["best_step"], "validation_loss": summary.get("validation_loss")}
    except (OSError, ValueError, KeyError):
        return {}


def one_task(args, target, corpus):
    """(b) once, then (c) at every budget, each with every seed; the paired differences."""
    metric = repro.TARGETS[target][5][0]
    args.epochs = args.epochs_given or repro.DEFAULT_EPOCHS[target]
    paths = limited_paths(args, target, repro.task_data(args, target, args.work))
    direct = repro.run_row(args, target, "minilm", args.model, paths, args.work)
    budgets = []
    for tokens in (int(t) for t in args.budgets.split(",")):
        model, seconds = adapted_model(args, target, paths, tokens, corpus)
        row = direct if model == args.model else repro.run_row(args, target, "minilm-tweets", model, paths, args.work)
        mean, std, diffs = results_md.paired(direct["test"][metric], row["test"][metric])
        budgets.append({
            "tokens": tokens, "steps": steps_of(args, tokens), "model": os.path.basename(model),
            "same_as_direct": model == args.model,
            "pretrain_minutes": round(seconds / 60, 1), "finetune_minutes": row["finetune_minutes"],
            "test": row["test"],
            "paired": {"mean": round(mean, 2), "std": round(std, 2), "values": [round(d, 2) for d in diffs]},
            **best_validation(model),
        })  # fmt: skip
        log(f"{target} at {tokens:,} tokens: (c) - (b) = {mean:+.2f} ± {std:.2f} {metric}")
        if args.merge_alphas and model != args.model:
            budgets[-1]["merged"] = merged_rows(args, target, paths, model, direct, metric)
    data = {name: repro.count_lines(path) for name, path in paths.items()}
    return {"metric": metric, "direct": direct, "budgets": budgets, "data": data, "epochs": args.epochs}, paths


def curve_picture(result, stem):
    """(c) − (b) against continued-pretraining tokens, one line per task, mean ± std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.hashsalt": "tweetkit", "font.size": 9}):
        figure, axis = plt.subplots(figsize=(6.4, 4.0))
        axis.axhline(0, color="#888", linewidth=0.8)
        for target, task in result["tasks"].items():
            xs = [b["tokens"] / 1e6 for b in task["budgets"]]
            axis.errorbar(xs, [b["paired"]["mean"] for b in task["budgets"]],
                          yerr=[b["paired"]["std"] for b in task["budgets"]], marker="o", capsize=3,
                          label=f"{results_md.TITLES.get(target, target)} "
                                f"({results_md.METRIC_NAMES.get(task['metric'], task['metric'])})")  # fmt: skip
        axis.set_xlabel("continued-pretraining tokens (millions; steps × batch × 128)")
        axis.set_ylabel("(c) − (b), paired by seed (points)")
        axis.set_title(f"Adaptation curve: {result['levers']}")
        axis.legend(frameon=False)
        figure.tight_layout()
        for extension in ("png", "svg"):
            metadata = {"Date": None} if extension == "svg" else {"Software": None}
            figure.savefig(f"{stem}.{extension}", dpi=120, metadata=metadata)
        plt.close(figure)


def embedding_picture(args, result, paths, models, stem):
    """MiniLM's and the largest budget's sentence embeddings of the task's test tweets, t-SNE."""
    panels = [
        ("MiniLM", args.model),
        (f"after {result['tasks'][args.embed_task]['budgets'][-1]['tokens']:,} tokens", models[-1]),
    ]
    files = []
    for number, (_, model) in enumerate(panels):
        out = f"{stem}-{number}.embed.jsonl"
        step(
            out,
            lambda model=model, out=out: sh(TWEETKIT + ["embed", "--model", model, paths["test"], "-q"], stdout=out),
        )
        files.append(out)
    command = TWEETKIT + ["plot", "--embeddings", *files, "-o", f"{stem}.png", "--max-points", args.max_points,
                          "--title", f"{results_md.TITLES.get(args.embed_task, args.embed_task)}: "
                                     "test tweets by gold label"]  # fmt: skip
    for name, _ in panels:
        command += ["--label", name]
    sh(command, stdout=f"{stem}.panels.jsonl")
    names = {"png": os.path.basename(f"{stem}.png"), "svg": os.path.basename(f"{stem}.svg")}
    return {**names, "task": args.embed_task, "panels": repro.read_jsonl(f"{stem}.panels.jsonl")}


def main(argv=None):
    args = arguments(argv)
    args.epochs_given = args.epochs
    started = time.time()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    corpus = repro.build_corpus(args, args.work)[0] if args.text != "tapt" else None
    levers = f"{args.text.upper()}" + {
        "simcse": f" with SimCSE (temperature {args.temperature})",
        "tsdae": f" with TSDAE (deletion {args.deletion})",
    }.get(args.objective, "")
    levers += f", anchored ({args.anchor_kind} x {args.anchor})" if args.anchor else ""
    levers += ", " + ("vocabulary +" + args.extend_pieces if args.extend else "base vocabulary")
    warming = args.head_warmup and args.objective == "mlm"
    levers += (f", head warm-up {args.head_warmup:.0%}" if warming else "") + f", lr {args.continue_lr}"
    levers += ", best validation checkpoint" if args.keep_best else ""
    result = {"kind": "adaptation", "name": args.name, "levers": levers, "tasks": {}}
    embed_paths, embed_models = None, []
    for target in tasks:
        result["tasks"][target], paths = one_task(args, target, corpus)
        if target == args.embed_task:
            embed_paths = paths
            tokens = int(args.budgets.split(",")[-1])
            embed_models = [adapted_model(args, target, paths, tokens, corpus)[0]]
    os.makedirs(args.results, exist_ok=True)
    stem = os.path.join(args.results, args.name)
    curve_picture(result, stem)
    result["picture"] = {"png": args.name + ".png", "svg": args.name + ".svg"}  # beside the JSON
    if embed_paths is not None:
        result["embeddings"] = embedding_picture(args, result, embed_paths, embed_models, stem + "-tsne")
    settings = {k: v for k, v in vars(args).items() if k not in ("data", "work", "results", "tiny_lr", "tiny_epochs")}
    # The recorded time of every step, so that a resumed run reports what the whole curve cost.
    spent = sum(
        t["direct"]["finetune_minutes"]
        + sum(b["pretrain_minutes"] + b["finetune_minutes"] for b in t["budgets"] if not b["same_as_direct"])
        + sum(m["finetune_minutes"] for b in t["budgets"] for m in b.get("merged", []))
        for t in result["tasks"].values()
    )
    result.update(settings=settings, hardware=repro.hardware(), minutes=round(spent, 1),
                  wall_minutes_this_run=round((time.time() - started) / 60, 1),
                  command=" ".join(map(shlex.quote, [
                      os.path.relpath(sys.argv[0]) if sys.argv[0] else "bench/adaptation.py",
                      *(argv or sys.argv[1:])])))  # fmt: skip
    with open(stem + ".json", "w") as handle:
        json.dump(result, handle, indent=2)
    section = "\n".join(results_md.adaptation_section(result, args.results, args.results) + merge_table(result)) + "\n"
    with open(stem + ".md", "w") as handle:
        handle.write(section)
    sys.stdout.write(section)


if __name__ == "__main__":
    main()
