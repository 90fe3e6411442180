# learnlr — the two commands: `make demo` (the main job on embedded defaults) and `make test`.
# TORCH picks the PyTorch build; it is installed in the same pip command as everything else so
# the resolver never pulls a second (CUDA) build. Example: make TORCH="torch==2.5.1" test
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
space := $(subst ,, )
# The stamp names the torch pin: `make TORCH=... test` on an existing venv reinstalls.
STAMP := $(VENV)/.installed-dev-$(subst =,_,$(subst /,_,$(subst $(space),_,$(TORCH))))

.PHONY: test demo install lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install "$(TORCH)" -e ".[dev]"
	rm -f $(VENV)/.installed-dev*
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The main job: every schedule side by side on the quick suite (<= 10 min on 2 cores); ends by
# printing the headline table. Re-running skips finished cells (results in $(DEMO_OUT)).
DEMO_OUT ?= bench-out/quick
demo: $(STAMP)
	$(VENV)/bin/learnlr bench --suite quick --workers 2 --out $(DEMO_OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
