# tweetkit: `make demo` installs into .venv and runs the pipeline on examples/; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch on this machine's disk; pyproject keeps a range so GPU users bring their own.
TORCH  ?= torch==2.13.0
DATA   ?= ../shared/data

.PHONY: install demo test test-slow bench bench-normalize bench-langid clean

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
	  | $(BIN)/tweetkit normalize --emoji-names bertweet --progress > demo-out/corpus.jsonl
	@echo "--- first normalised English tweets (demo-out/corpus.jsonl):" >&2
	@head -n 5 demo-out/corpus.jsonl

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: bench-normalize bench-langid

bench-normalize: install
	$(BIN)/python bench/normalize.py --data $(DATA)

bench-langid: install
	$(BIN)/python bench/langid.py --data $(DATA)

clean:
	rm -rf demo-out .pytest_cache
