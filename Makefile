# tweetkit: `make demo` installs into .venv and runs the pipeline on examples/; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch on this machine's disk; pyproject keeps a range so GPU users bring their own.
TORCH  ?= torch==2.13.0
DATA   ?= ../shared/data

.PHONY: install demo test test-slow bench bench-normalize bench-langid bench-dedup bench-train-bpe clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

demo: install
	mkdir -p demo-out
	$(BIN)/tweetkit langid --keep en --dropped demo-out/not-english.jsonl --progress examples/tweets.jsonl \
	  | $(BIN)/tweetkit normalize --emoji-names bertweet --progress \
	  | $(BIN)/tweetkit dedup --drop-retweets --min-tokens 3 --dropped demo-out/dropped.jsonl --progress > demo-out/corpus.jsonl
	$(BIN)/tweetkit split demo-out/corpus.jsonl -o demo-out/corpus --ratios train=0.9,test=0.1 --progress
	$(BIN)/tweetkit train-bpe demo-out/corpus.train.jsonl -o demo-out/tok --vocab-size 1000
	$(BIN)/tweetkit stats --tokenizer demo-out/tok demo-out/corpus.train.jsonl > demo-out/stats.json
	@echo "--- first normalised, deduplicated English tweets (demo-out/corpus.jsonl):" >&2
	@head -n 3 demo-out/corpus.jsonl

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: bench-normalize bench-langid bench-dedup bench-train-bpe

bench-normalize: install
	$(BIN)/python bench/normalize.py --data $(DATA)

bench-langid: install
	$(BIN)/python bench/langid.py --data $(DATA)

bench-dedup: install
	$(BIN)/python bench/dedup.py --data $(DATA)
	$(BIN)/python bench/dedup_memory.py --data $(DATA)

bench-train-bpe: install
	$(BIN)/python bench/train_bpe.py --data $(DATA)

clean:
	rm -rf demo-out .pytest_cache
