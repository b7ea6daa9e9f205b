# chatsite: `make run` starts the site on embedded defaults, `make test` runs the whole suite.

# Django 6 needs Python 3.12+; the machine's default python3 is 3.11, so prefer pyenv's 3.12.1.
PYTHON ?= $(shell PYENV_VERSION=3.12.1 pyenv which python 2>/dev/null || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements/*.txt | cksum | cut -d' ' -f1)
CHROMIUM ?= /usr/bin/chromium
HOST ?= 127.0.0.1
PORT ?= 8000
DEVLLM_PORT ?= 8001

.PHONY: install run test test-faults test-fast bench bench-render lint format check-browser clean

NODE_STAMP := node_modules/.installed-$(shell cksum package-lock.json | cut -d' ' -f1)

install: $(STAMP) $(NODE_STAMP)

# The page's browser libraries (Markdown, sanitizer, highlighter), pinned in package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(STAMP): requirements/base.txt requirements/dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "chatsite needs Python 3.12 or newer; install it with pyenv (pyenv install 3.12.1) or set PYTHON=/path/to/python3.12")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

# The main job: the site on http://$(HOST):$(PORT) with SQLite, an in-process cache, the
# development LLM server and a demo user, unless DATABASE_URL and friends say otherwise.
run: install
	DEBUG=1 $(PY) manage.py migrate --noinput
	DEBUG=1 $(PY) manage.py create_demo_user
	@echo "Open http://$(HOST):$(PORT)/ and log in with the demo login above. Ctrl-C stops both servers."
	@DEBUG=1 $(PY) manage.py devllm --host 127.0.0.1 --port $(DEVLLM_PORT) & devllm=$$!; \
	trap 'kill $$devllm 2>/dev/null' EXIT INT TERM; \
	DEBUG=1 DEVLLM_URL=http://127.0.0.1:$(DEVLLM_PORT)/v1 $(PY) manage.py runserver $(HOST):$(PORT)

# The whole suite: PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set (CI sets
# them), SQLite and an in-process cache otherwise. Browser tests need Debian's Chromium.
# TEST_WORKERS parallel workers (pytest-xdist), each with its own test database, servers
# and Redis key space. Four on two cores: much of the suite waits on streams and browsers,
# and four overlap those waits (six are no faster: the two cores are busy by then).
TEST_WORKERS ?= 4
test: install check-browser
	SECRET_KEY=$${SECRET_KEY:-insecure-test-only-key} CHROMIUM=$(CHROMIUM) $(PY) -m pytest -m "not faults" -n $(TEST_WORKERS) --dist worksteal

# The fault suite: tests that cause faults on purpose (a throwaway PostgreSQL cluster of
# their own, initdb in a temporary directory, stopped and restarted; the shared one is never
# touched). Needs PostgreSQL's server binaries (initdb, pg_ctl).
test-faults: install
	SECRET_KEY=$${SECRET_KEY:-insecure-test-only-key} $(PY) -m pytest -m faults

# A quick loop: every test that starts no server and drives no browser (the markers say
# which; tests/conftest.py refuses an unmarked one).
test-fast: install
	SECRET_KEY=$${SECRET_KEY:-insecure-test-only-key} $(PY) -m pytest -m "not live and not browser and not faults" -n $(TEST_WORKERS) --dist worksteal

# Streams per second, time to first byte and server CPU per stream: chatsite against the bare
# development LLM server, in one run (see bench/stream_bench.py).
bench: install
	$(PY) bench/stream_bench.py

# What rendering a 2,000-token streaming answer costs the browser per frame, at 10% and at
# 100% of it, at full speed and with the CPU slowed 4x (see bench/render_bench.py).
bench-render: install check-browser
	CHROMIUM=$(CHROMIUM) $(PY) bench/render_bench.py

check-browser:
	@test -x $(CHROMIUM) || { echo "Browser tests need Chromium at $(CHROMIUM): apt-get install -y chromium (or set CHROMIUM=...)"; exit 1; }

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	npx --no-install eslint .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) node_modules db.sqlite3 test_db.sqlite3 staticfiles .pytest_cache .ruff_cache
