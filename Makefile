# The two commands of the README: `make demo` and `make test`. Each sets up
# everything it needs on a fresh machine first (a virtual environment with the
# CPU build of torch, graphviz's `dot` when missing and we are root).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.graphexplain-installed

.PHONY: demo test setup graphviz chromium benchmark coverage docs clean

demo: setup graphviz
	$(BIN)/graphexplain trace examples/autograd_mean.py

test: setup graphviz chromium
	$(BIN)/python -m pytest

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,examples,coverage]'
	touch $(STAMP)

graphviz:
	@if command -v dot >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing graphviz (the dot program)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; \
	else \
		echo "graphviz's dot program is missing: install it (apt-get install graphviz, brew install graphviz)"; \
		echo "to get PNG/SVG/PDF pictures; the DOT source and the walkthrough work without it."; \
	fi

# The --html page's tests run it in headless Chromium (skipped, saying so, without it);
# only `make test` needs it, so `make demo` stays light.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (for the HTML page's browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is missing: the HTML page's browser tests will be skipped (apt-get install chromium)"; \
	fi

docs: setup graphviz
	$(BIN)/python docs/generate.py

coverage: setup
	$(BIN)/python benchmarks/coverage.py

# Side by side, plain against traced, over the cases of docs/performance.md (which it
# writes); `make benchmark ARGS=--quick` for one run of each. benchmarks/overhead.py
# (in one process: the interception alone, --call 10) still runs on its own.
benchmark: setup
	$(BIN)/python benchmarks/speed.py $(ARGS)

clean:
	rm -rf $(VENV) graphexplain-out *.egg-info
