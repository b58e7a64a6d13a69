"""The adaptation recipe at real scale on one GPU (H100/H200 class), in about 10 minutes.

    python scripts/repro_gpu.py [--name gpu] [bench/adaptation.py flags...]
    python scripts/repro_gpu.py --smoke       # the same steps at toy size, on the CPU
    # in parts, each within a short lease of a GPU: one task per run, each with its own results
    python scripts/repro_gpu.py --tasks semeval17 --name gpu-semeval17
    python scripts/repro_gpu.py --tasks irony --name gpu-irony

bench/adaptation.py with the settings a GPU affords: the full train sets (SemEval-2017's
~49.5k tweets, irony's 2.9k), TAPT over the task's train text for 1,000 steps of 256 packed
rows (32.8M tokens: ~20 passes over SemEval's text, ~300 over irony's, Don't Stop
Pretraining's many-epochs TAPT), the base vocabulary (bench/adaptation.py's default: the
extension cost about a point at 1.2M CPU tokens), head warm-up for 10% of the steps, the
checkpoint of the lowest validation MLM loss, bf16, 3 seeds; (c) − (b) paired by seed.  The
shared corpus is not built (TAPT needs none), so no minutes go to langid | normalize | dedup.
Writes results/NAME.json (default gpu), NAME.png/.svg, NAME-tsne.png/.svg, NAME.md.  Flags
after the script's own are passed to bench/adaptation.py and win over these defaults.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))

GPU_DEFAULTS = ["--train-limit", "0", "--budgets", "0,32768000", "--pretrain-batch-size", "256", "--text", "tapt",
                "--head-warmup", "0.1", "--precision", "bf16", "--seeds", "1,2,3", "--continue-lr", "1e-4"]  # fmt: skip


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--name" not in argv:
        argv = ["--name", "gpu", *argv]
    smoke = "--smoke" in argv
    if not smoke:
        import torch

        if not torch.cuda.is_available() and "--allow-cpu" not in argv:
            sys.exit(
                "repro_gpu: no CUDA GPU here; these settings take many hours on a CPU "
                "(--smoke for a toy run, --allow-cpu to insist)"
            )
        argv = [a for a in argv if a != "--allow-cpu"]
    import adaptation

    # --smoke sets toy sizes; the GPU settings that stay are bf16 and the head warm-up.
    defaults = ["--precision", "bf16", "--head-warmup", "0.5"] if smoke else GPU_DEFAULTS
    adaptation.main([*defaults, *argv])


if __name__ == "__main__":
    main()
