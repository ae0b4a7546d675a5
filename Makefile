# `make run` sets up and serves on http://localhost:5000; `make test` sets up and runs every test.
SHELL := /bin/bash
# The virtualenv's interpreter: Debian's /usr/bin/python3 when it is 3.11 or newer, else python3 from PATH.
# Debian builds it with PGO and LTO: a gateway call costs 15-20% less CPU on it than on a default source build
# such as pyenv's (bench/gateway.py, same machine). `make PYTHON=python3.12 ...` picks another (after `rm -rf .venv`).
PYTHON ?= $(shell /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo /usr/bin/python3 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-sqlite test-postgres lint-imports setup test-setup chromium postgresql nginx deploy-test \
	bench bench-rotation load fuzz

run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py create_default_admin
	$(PY) manage.py collectstatic --noinput --verbosity 0
	exec $(VENV)/bin/gunicorn --config config/gunicorn.py

# Every test on SQLite, then the database-touching ones again on a throwaway PostgreSQL server
# (tests/databases.py says which); both runs always happen, and either failing fails `make test`.
test: test-setup postgresql nginx
	@status=0; \
	$(MAKE) --no-print-directory lint-imports || status=1; \
	$(MAKE) --no-print-directory test-sqlite || status=1; \
	$(MAKE) --no-print-directory test-postgres || status=1; \
	exit $$status

# The layers (.importlinter): packages import only downwards; docs/architecture.md draws them.
lint-imports: test-setup
	$(VENV)/bin/lint-imports

test-sqlite: test-setup postgresql nginx
	$(PY) -m pytest

test-postgres: test-setup postgresql
	scripts/with-postgres.sh $(PY) -m pytest

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

# The PostgreSQL server binaries (Debian keeps them in /usr/lib/postgresql/<version>/bin); no server is left running.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
		apt-get update -q && apt-get install -y -q postgresql; }

# Debian's nginx, for tests/deploy/ (which runs its own on 127.0.0.1 ports; where systemd runs services, the
# package also starts Debian's default site on port 80 until it is disabled).
nginx:
	@[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || { apt-get update -q && apt-get install -y -q nginx; }

# The production deployment of deploy/ on 127.0.0.1 (also part of `make test`): nginx with TLS in front of two
# app instances on a throwaway PostgreSQL, checked through the proxy; the systemd units verified.
deploy-test: setup $(VENV)/.test-installed postgresql nginx
	$(PY) -m pytest tests/deploy

# Every surface at 200..2,000 connections on SQLite and a throwaway PostgreSQL side by side, the gateway overhead,
# 16 to 1,024 concurrent streams (and granian serving the same app, for the server comparison) and the key
# rotation; writes docs/benchmarks.md and its plots (not tests; about 25 minutes).
bench: setup postgresql $(VENV)/.bench-installed
	scripts/with-postgres.sh sh -c '$(PY) bench/surfaces.py --database-url "$$TEST_DATABASE_URL" --report docs/benchmarks.md --rotation --streams 16,64,256,1024 --compare-servers 256,1024'

$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

# 60 s of concurrent API reads and writes and gateway calls against the served app on loopback (bench/load.py).
load: setup
	$(PY) bench/load.py

# Re-encrypt 100,000 connections with rotate_encryption_key; prints rows/s and peak memory (not a test).
bench-rotation: setup
	$(PY) bench/rotation.py

# Schema-driven fuzzing of the API and the gateway at volume (not part of `make test`, which runs a fixed
# 1,200-request slice): at least 5,000 generated requests, new ones each run (FUZZ_RANDOM=0 makes a run repeatable).
fuzz: test-setup
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-130} FUZZ_MIN_REQUESTS=5000 FUZZ_RANDOM=$${FUZZ_RANDOM:-1} LOG_LEVEL=ERROR \
		$(PY) -m pytest -q -s tests/config/test_api_fuzz.py -k test_generated_requests
