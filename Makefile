# Every target installs what it needs into .venv (inside the checkout) first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test bench proto docs clean

# The main job: a local cluster (3 masters on 127.0.0.1:5050-5052) until Ctrl-C.
run: $(INSTALLED)
	$(BIN)/mesos-es cluster up

# The whole test suite (what CI runs, through .ci/run).
test: $(INSTALLED)
	$(BIN)/python -m pytest

# Benchmarks: tables for people (add ARGS=--json for tools: one JSON object per benchmark and
# line; ARGS common to both: --json, --quick).
bench: $(INSTALLED)
	$(BIN)/mesos-es bench log $(ARGS)
	$(BIN)/mesos-es bench alloc $(ARGS)
	$(BIN)/mesos-es bench master $(ARGS)
	$(BIN)/mesos-es bench replay $(ARGS)
	$(BIN)/mesos-es bench failover $(ARGS)

# Regenerate the committed protobuf code with the pinned protoc (grpcio-tools).
proto: $(INSTALLED)
	$(BIN)/python -m mesos_es.pb.generate

# Regenerate docs/events.md (the event catalogue) from the schemas' comments.
docs: $(INSTALLED)
	$(BIN)/python -m mesos_es.pb.catalogue

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python scripts/install_pymesos.py
	bash scripts/install_zookeeper.sh
	touch $(INSTALLED)

clean:
	rm -rf $(VENV) .mesos-es build *.egg-info
