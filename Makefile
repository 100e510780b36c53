# Hookhub: the two commands of the quick start are `make run` and `make test`.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
VENV := .venv/bin

.PHONY: install run test bench lint tools broker

install:  ## the virtualenv with every service and the test tools, from the lock file
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --locked --all-groups

broker:  ## make sure RabbitMQ answers on 127.0.0.1:5672 (starts the local one if it is down)
	@scripts/ensure-rabbitmq

run: install broker  ## the whole hub on this machine: API on :8000 and every consumer
	$(VENV)/hookhub dev

test: install broker tools  ## the whole test suite, against the real broker
	$(VENV)/pytest

tools: install  ## deck, docker-compose, helm and kubernetes-validate for the deployment checks (tests/deploy)
	@scripts/install-tools

bench: install broker  ## ingest and consumer benchmarks, side by side with their baselines
	@scripts/apt-install wrk
	$(VENV)/python bench/run.py

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
