# Thin wrappers: the real logic lives in cargo and scripts/.
CARGO ?= cargo

.PHONY: build test test-rust lint fmt bench sim

build:
	$(CARGO) build --workspace --bins

## The whole suite, exactly as CI runs it: installs the wasm target and web tools when missing
## (so it works on a fresh machine), lints, runs every Rust test (core, simulator, process
## tests), builds the core for wasm, then runs the playground's browser tests.
test: web-tools lint test-rust web-test

test-rust:
	$(CARGO) build -p native-node --bins
	INSTA_UPDATE=no $(CARGO) test --workspace
	$(CARGO) build -p keyval-core --target wasm32-unknown-unknown

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Simulator throughput (events/s, seeds/s).
bench:
	$(CARGO) bench -p keyval-core --bench simulator

## A fresh local 3-node release cluster under `kvctl bench`: puts and gets at 1, 16, 64 and
## 256 clients, one table. DURATION=s per case (default 5); see scripts/bench-cluster.sh.
.PHONY: bench-cluster
bench-cluster:
	bash scripts/bench-cluster.sh

## Many more simulator seeds than the default test run: make sim SEEDS=100000
SEEDS ?= 100000
sim:
	KEYVAL_SEEDS=$(SEEDS) $(CARGO) test --release -p keyval-core --test simulation -- --nocapture

## The playground (web-viz): build it, start the local cluster if needed, serve it on :8080.
.PHONY: playground web-test web-tools
playground:
	bash scripts/playground.sh

## Every playground test: native, wasm-bindgen-test in Chromium, end-to-end (screenshots in
## artifacts/screenshots/).
web-test:
	bash web-viz/test.sh

## Installs trunk, wasm-bindgen-cli, chromium and the e2e npm packages when missing.
web-tools:
	bash scripts/install-web-tools.sh

## The local 3-node cluster (127.0.0.1:7001..7003, data/node{N}); see scripts/cluster.sh.
## PROFILE=release for an optimized build; FOLLOW=1 make cluster-logs to follow.
.PHONY: cluster-start cluster-status cluster-stop cluster-logs
cluster-start:
	bash scripts/cluster.sh start
cluster-status:
	bash scripts/cluster.sh status
cluster-stop:
	bash scripts/cluster.sh stop
cluster-logs:
	bash scripts/cluster.sh logs
