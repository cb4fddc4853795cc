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

## First-time setup on a fresh machine: the toolchain's components, the wasm target and the
## playground's web tools (trunk, wasm-bindgen, chromium, the e2e npm packages).
.PHONY: init deps coverage docker compose-up compose-down
init:
	rustup component add rustfmt clippy
	bash scripts/install-web-tools.sh

## Downloads every crate the workspace needs, so later builds work offline (cargo --offline).
deps:
	$(CARGO) fetch --locked

## Line coverage of core and native-node over the Rust tests (process tests included: the
## keyval/kvctl they spawn are instrumented too). HTML in target/llvm-cov/html; the last line
## printed is the total. Installs cargo-llvm-cov and llvm-tools when missing. Slow: ~3x make
## test-rust.
COVERAGE_IGNORE = '(web-viz|/tests/|benches/|\.cargo/registry)'
coverage:
	@command -v cargo-llvm-cov >/dev/null || $(CARGO) install cargo-llvm-cov --locked
	@rustup component list --installed | grep -q llvm-tools || rustup component add llvm-tools-preview
	# show-env points cargo (target dir, RUSTFLAGS, profile files) at llvm-cov's instrumented
	# build, so the keyval/kvctl the process tests spawn are built and measured there too.
	bash -c 'set -e; source <($(CARGO) llvm-cov show-env --export-prefix); \
	  $(CARGO) llvm-cov clean --workspace; \
	  $(CARGO) build -p native-node --bins; \
	  INSTA_UPDATE=no $(CARGO) test -p keyval-core -p native-node -p keyval-tests; \
	  $(CARGO) llvm-cov report --html --ignore-filename-regex $(COVERAGE_IGNORE); \
	  $(CARGO) llvm-cov report --summary-only --ignore-filename-regex $(COVERAGE_IGNORE) | tail -1'

## The container image (see Dockerfile) and the 3-node compose cluster (docker-compose.yml).
docker:
	docker build -t keyval:latest .
compose-up:
	docker compose up -d --build
compose-down:
	docker compose down
