# Two entry points: `make run` (the main job) and `make test` (every quality gate and the suite).
# Another interpreter: `make test PYTHON=python3.13` (its own venv, .venv-python3.13/).
PYTHON ?= python3.11
ifeq ($(PYTHON),python3.11)
VENV   := .venv
else
VENV   := .venv-$(notdir $(PYTHON))
endif
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint bench clean netns-tools browser-tools bytecode

$(STAMP): pyproject.toml
	@interp=$$(scripts/find-python $(PYTHON)) || { echo "$(PYTHON) not found (set PYTHON=...)"; exit 1; }; \
	  test -x $(PY) || { echo "creating $(VENV) with $$interp"; $$interp -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Bytecode for the package's own modules, as `pip install` of a wheel compiles it: an editable
# install leaves src/ uncompiled, and where PYTHONDONTWRITEBYTECODE is set (as on CI) every
# process would compile every module it imports again (a `skywire` command paid ~100 ms for it).
# Only changed files are compiled again.
bytecode: $(STAMP)
	@$(PY) -m compileall -q -j0 src

setup: $(STAMP) bytecode

run: $(STAMP) bytecode
	$(VENV)/bin/skywire testnet

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy --strict src

# The sudph NAT and VPN tests build network namespaces with ip, sysctl and iptables; as root,
# install what is missing.
netns-tools:
	@for pair in iptables:iptables ip:iproute2 sysctl:procps; do \
	  tool=$${pair%%:*}; pkg=$${pair#*:}; \
	  if [ "$$(id -u)" = 0 ] && ! command -v $$tool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $$pkg (for the NAT and VPN namespace tests)"; \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null 2>&1)) || \
	    echo "could not install $$pkg: the namespace tests will be skipped"; \
	  fi; \
	done

# The browser tests drive Debian's headless Chromium, the proxy tests curl, the dmsgpty test
# tmux; as root, install what is missing (once).
browser-tools:
	@for tool in chromium curl tmux; do \
	  if [ "$$(id -u)" = 0 ] && ! command -v $$tool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $$tool (for the browser, proxy and dmsgpty tests)"; \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$tool >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$tool >/dev/null 2>&1)) || \
	    echo "could not install $$tool: the tests that need it will be skipped"; \
	  fi; \
	done

test: lint netns-tools browser-tools bytecode
	$(PY) -m pytest -q

bench: $(STAMP) bytecode
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf .venv .venv-* .mypy_cache .pytest_cache .ruff_cache
