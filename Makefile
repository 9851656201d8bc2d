# Set-up and everyday jobs. Every target installs what it needs into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install debian-deps demo test lint bench clean

# Debian splits venv and ensurepip out of python3: installed when missing (we run as root).
$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Vigil needs Python 3.11 or newer"'
	@$(PY) -c 'import ensurepip, venv' 2>/dev/null || { apt-get update && apt-get install -y python3-venv; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The live loop on real processes: a local fleet of HTTP services under load, a bad deploy
# injected, Vigil detecting it from the logs, rolling it back and verifying the recovery
# (about a minute; writes demo/summary.json; leaves nothing running).
demo: install
	$(BIN)/vigil demo --scenario bad_deploy --out demo

# The tests start real Prometheus (and promtool), Alertmanager and PostgreSQL (initdb and postgres,
# on PATH or in /usr/lib/postgresql/*/bin), and make TLS certificates with openssl (Debian
# packages; we run as root).
debian-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null \
	  && command -v prometheus-alertmanager >/dev/null && command -v openssl >/dev/null \
	  && { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    prometheus prometheus-alertmanager openssl postgresql; }

test: install debian-deps
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/vigil bench pipeline --events 1000000
	$(BIN)/vigil bench detection --events 200000 --seeds 3

clean:
	rm -rf $(VENV) demo vigil-out .pytest_cache .mypy_cache .ruff_cache
