# Hookhub: the two commands of the quick start are `make run` and `make test`.
# uv from PATH, else a private copy in .tools/uv (a venv of its own: a system Python that is
# "externally managed", as on Debian and Ubuntu, refuses a plain `pip install`).
UV := $(shell command -v uv 2>/dev/null || echo .tools/uv/bin/uv)
VENV := .venv/bin

.PHONY: install run test bench lint tools broker

install:  ## the virtualenv with every service and the test tools, from the lock file
	@test -x "$(UV)" || \
		{ python3 -m venv .tools/uv && .tools/uv/bin/pip install --quiet uv; }
	$(UV) sync --locked --all-groups

broker:  ## make sure RabbitMQ answers on 127.0.0.1:5672 (starts the local one if it is down)
	@scripts/ensure-rabbitmq

run: install broker  ## the whole hub on this machine: API on :8000, every consumer, the console on :8001 (ARGS='--port 9000 --operator-port 9001' for others)
	$(VENV)/hookhub dev $(ARGS)

test: install broker tools  ## the whole test suite, against the real broker
	$(VENV)/pytest

tools: install  ## deck, docker-compose, helm, kubernetes-validate, promtool and checkov (tests/deploy) and chromium (the console's browser tests)
	@scripts/install-tools

bench: install broker  ## ingest, consumer and end-to-end benchmarks, side by side with their baselines
	@scripts/apt-install wrk
	$(VENV)/python bench/run.py

.PHONY: chaos
chaos:  ## the fault suite: its own three-node RabbitMQ cluster, faults under load (~13 min)
	@test -x $(VENV)/python || { echo "no virtualenv in .venv: run 'make install' first"; exit 1; }
	$(VENV)/python -m chaos.run

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
