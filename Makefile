# OneKey: `make run` sets up and serves on http://127.0.0.1:$(PORT); `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Test processes (pytest-xdist): the tests mostly wait on servers, so two share two cores well.
TEST_WORKERS ?= 2
export PATH := $(CURDIR)/$(BIN):$(PATH)
export FLASK_APP := wsgi:app

.PHONY: run test lint format install install-dev migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/flask db upgrade
	$(BIN)/flask catalog sync

run: migrate
	$(BIN)/flask users ensure-admin
	@echo "OneKey on http://127.0.0.1:$(PORT)  (Ctrl-C stops everything)"
	$(BIN)/honcho -f Procfile start -p $(PORT)

test: install-dev
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
