# `make run` sets up and serves on http://localhost:5000; `make test` sets up and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test setup test-setup chromium bench-rotation

run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py create_default_admin
	$(PY) manage.py collectstatic --noinput --verbosity 0
	exec $(VENV)/bin/gunicorn --config config/gunicorn.py config.wsgi

test: test-setup
	$(PY) -m pytest

setup: $(VENV)/.installed .env

test-setup: setup $(VENV)/.test-installed chromium

$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		rm -rf $(VENV); \
		echo "Installing python3-venv"; \
		apt-get update -q && apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test-installed: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

# Created once with fresh keys (mode 0600) and never overwritten.
.env: | $(VENV)/.installed
	$(PY) -m config.envfile

# Browser tests drive Debian's Chromium (playwright cannot download its own browser here).
chromium:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

# Re-encrypt 100,000 connections with rotate_encryption_key; prints rows/s and peak memory (not a test).
bench-rotation: setup
	$(PY) bench/rotation.py
