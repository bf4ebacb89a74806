# tracker-watch — `make demo` and `make test` each set up .venv if needed, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# production install (no test tools): sudo make install [PREFIX=/opt/tracker-watch]
PREFIX     ?= /opt/tracker-watch
SYSCONFDIR ?= /etc/tracker-watch
UNITDIR    ?= /etc/systemd/system

.PHONY: demo test lint unit bench clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP)
	$(BIN)/tracker-watch demo

lint: $(STAMP)
	$(BIN)/ruff check tracker_watch tests bench
	$(BIN)/mypy

# The suite runs in TEST_WORKERS pytest-xdist processes (default 3), a module's tests in one process
# (loadscope), so that a module's swarm, browser or server starts once; each process has its own schemas and
# temporary directory. Most of a test's time is spent waiting on sockets, timers and PostgreSQL, so three
# processes on two cores take ~5 minutes against ~15 for one (TEST_WORKERS=0: one process, as before).
TEST_WORKERS ?= 3
unit: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# The whole suite: static checks, then every test against real PostgreSQL and real libtorrent peers.
test: lint unit

bench: $(STAMP)
	$(BIN)/python -m bench.run

# A venv of its own with the package and its runtime dependencies only; the configuration is installed
# root-only (0600) once and never overwritten; the unit reads it through LoadCredential=.
install:
	$(PYTHON) -m venv $(DESTDIR)$(PREFIX)/.venv
	$(DESTDIR)$(PREFIX)/.venv/bin/python -m pip install --quiet --upgrade pip
	$(DESTDIR)$(PREFIX)/.venv/bin/python -m pip install --quiet .
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/README.md
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)
	test -e $(DESTDIR)$(SYSCONFDIR)/tracker-watch.toml || \
	    install -m 0600 config/tracker-watch.example.toml $(DESTDIR)$(SYSCONFDIR)/tracker-watch.toml
	install -D -m 0644 deploy/systemd/tracker-watch.service $(DESTDIR)$(UNITDIR)/tracker-watch.service

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
