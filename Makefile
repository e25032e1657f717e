# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv if absent
# and installs the project (re-installs when setup.cfg or pyproject.toml change).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.videoscene-installed
OUT ?= outputs/demo
DEMO_ARGS ?=

.PHONY: demo test install registry clean-venv

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet -e '.[dev]'
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet --no-build-isolation -e '.[dev,deepspeed]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --out $(OUT) $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest tests -q -n 2

registry: $(STAMP)
	$(PY) -m videoscene.registry

clean-venv:
	rm -rf $(VENV)
