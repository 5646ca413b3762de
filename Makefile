# robofleet: `make demo` and `make test` set everything up on a fresh machine.
# Caches live outside the clone (~/.cache) so later runs and CI reuse them.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

CACHE            ?= $(HOME)/.cache/robofleet
export CARGO_TARGET_DIR ?= $(CACHE)/target
VENV             ?= $(CACHE)/venv
export ROBOFLEET_PYTHON ?= $(VENV)/bin/python
export ROBOFLEET_CLUSTER_STATE ?= $(CURDIR)/target/cluster
TOOLS            ?= $(CACHE)/tools
CARGO            ?= cargo

.PHONY: help test demo cluster-up cluster-down generate check-generated lint ci-cold k8s-bins venv build-tests argocd-harness bench-scale

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

k8s-bins: ## build etcd, Kubernetes, kwok and helm from Go modules (cached in ~/.cache/robofleet-cluster)
	@tests/cluster/build.sh >/dev/null

venv: $(VENV)/.installed ## Python test tools (onnxruntime, cyclonedds, rosbags, ...) in ~/.cache/robofleet/venv

$(VENV)/.installed: tests/requirements.txt
	@test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $@

build-tests: venv ## compile every test binary (debug) before the network is cut
	$(CARGO) test --workspace --no-run
	$(CARGO) build --workspace --bins

# Argo CD Lua scripts run under gopher-lua as Argo CD embeds it (tests/tests/argocd.rs); built
# before the network is cut. C Lua 5.1 comes from the lua5.1 apt package (.ci/run installs it).
export ROBOFLEET_ARGOCD_HARNESS ?= $(CACHE)/bin/argocd-lua-harness
argocd-harness: $(ROBOFLEET_ARGOCD_HARNESS) ## the gopher-lua harness for the Argo CD scripts (Go module proxy: gopher-lua)

$(ROBOFLEET_ARGOCD_HARNESS): tests/argocd/harness/main.go tests/argocd/harness/go.mod tests/argocd/harness/go.sum
	cd tests/argocd/harness && GOWORK=off go build -buildvcs=false -o $@ .

# The ONNX Runtime shared library comes from the PyPI onnxruntime wheel in the venv.
test: k8s-bins build-tests argocd-harness ## all tests: unit, cluster, interop (starts and stops a local cluster in a loopback-only netns)
	@ORT_DYLIB_PATH="$$(ls $(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1)" \
	  tests/run-in-netns.sh

cluster-up: k8s-bins ## start the local control plane with simulated robots (ROBOFLEET_ROBOTS=3)
	@tests/cluster/up.sh >/dev/null
	@source $(ROBOFLEET_CLUSTER_STATE)/env && kubectl get nodes -L robofleet.io/robot,topology.kubernetes.io/zone,robofleet.io/ros-domain-id
	@echo "use it with: source $(ROBOFLEET_CLUSTER_STATE)/env    stop it with: make cluster-down"

cluster-down: ## stop the local control plane (by recorded PIDs) and delete its state
	@tests/cluster/down.sh

demo: k8s-bins venv ## the main job: local control plane, simulated robots, operator, a model rollout
	$(CARGO) build --release -p robofleet-operator -p inference-sidecar -p ros2-bridge -p kubectl-robofleet -p robofleet-tests \
	  --bin robofleet-operator --bin inference-sidecar --bin ros2-bridge --bin kubectl-robofleet --bin pod-runner
	@ORT_DYLIB_PATH="$$(ls $(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1)" \
	  tests/demo.sh

# Not part of `make test` (10-20 minutes at 1,000 robots). ROBOTS=10000 attempts the large fleet.
bench-scale: k8s-bins ## scale benchmark: operator vs DaemonSets on ROBOTS=1000 kwok robots (docs/benchmarks.md)
	@bench/scale/run.sh

generate: ## regenerate committed generated files (CRD YAML, CRD reference)
	@if [[ -f crds/src/bin/crdgen.rs ]]; then $(CARGO) run --quiet -p robofleet-crds --bin crdgen -- --copy-to charts/robofleet/crds; fi

check-generated: generate ## fail if generated files differ from what is committed
	@git diff --exit-code -- deploy docs/reference charts || { echo "generated files are stale: run make generate" >&2; exit 1; }

$(TOOLS)/bin/cargo-deny:
	$(CARGO) install --root $(TOOLS) cargo-deny

lint: $(TOOLS)/bin/cargo-deny ## rustfmt, clippy -D warnings, dependency policy, shell syntax
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(TOOLS)/bin/cargo-deny check bans licenses sources
	@for f in tests/cluster/*.sh tests/*.sh .ci/run; do bash -n "$$f"; done

ci-cold: ## what CI does, with empty Go, cargo, pip and cluster caches (measures a cold run)
	@COLD=$$(mktemp -d /tmp/robofleet-cold.XXXXXX); echo "cold caches in $$COLD"; \
	  env GOMODCACHE=$$COLD/gomod GOCACHE=$$COLD/gocache CARGO_HOME=$$COLD/cargo \
	    CACHE=$$COLD/robofleet ROBOFLEET_CLUSTER_CACHE=$$COLD/cluster CARGO_TARGET_DIR=$$COLD/robofleet/target \
	    VENV=$$COLD/robofleet/venv ROBOFLEET_PYTHON=$$COLD/robofleet/venv/bin/python TOOLS=$$COLD/robofleet/tools \
	    PIP_NO_CACHE_DIR=1 bash .ci/run; rc=$$?; rm -rf $$COLD; exit $$rc
