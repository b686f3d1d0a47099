# Two jobs: `make demo` (set up, drive the AutoVLA agent over the default routes) and `make test`.
.DEFAULT_GOAL := help
VENV := .venv/bin

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup:  ## create .venv and install the package with its dev extras
	@bash scripts/setup_env.sh dev

demo: setup  ## drive the AutoVLA agent over the default routes; writes outputs/results.json and replays
	@$(VENV)/autovla-demo

test: setup  ## lint and run the whole test suite
	@$(VENV)/ruff check .
	@$(VENV)/ruff format --check .
	@$(VENV)/mypy
	@$(VENV)/pytest -q

check-install: setup  ## install the wheel beside navsim v1.1 / Bench2Drive / numpy 2 pins (also part of `make test`)
	@$(VENV)/python scripts/check_install.py

lint:  ## ruff check and format check only
	@$(VENV)/ruff check . && $(VENV)/ruff format --check .

.PHONY: help setup demo test check-install lint
