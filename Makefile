# Two entry points: `make demo` (main job on the embedded default) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: demo test lint install install-test clean

$(VENV)/.stamp-install: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -e '.[test]'
	touch $(VENV)/.stamp-install $@

install: $(VENV)/.stamp-install
install-test: $(VENV)/.stamp-test

demo: install
	$(VENV)/bin/famipose demo --out demo_out

test: install-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) demo_out
