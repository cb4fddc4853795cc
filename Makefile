# Thin wrappers: the real logic lives in cargo and scripts/.
CARGO ?= cargo

.PHONY: build test test-rust lint fmt bench sim scenario

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
.PHONY: bench-cluster measure-membership
bench-cluster:
	bash scripts/bench-cluster.sh
## Membership figures on a fresh release cluster: time to add a node to ~STATE_MB (100) MB of
## state, and write throughput in 1 s windows while a node is added and removed.
measure-membership:
	bash scripts/measure-membership.sh

## The machine's floor for one put, no cluster needed: a leader and two followers with bare
## blocking I/O (write + fdatasync each, loopback TCP), the lowest 1-client put latency this
## disk and CPU allow whatever the software. DIR= the disk to measure (default /tmp, where the
## bench scripts keep their clusters). See `kvctl floor --help`.
.PHONY: bench-floor
bench-floor:
	$(CARGO) build -q --release -p native-node --bin kvctl
	$${CARGO_TARGET_DIR:-target}/release/kvctl floor --dir $(or $(DIR),/tmp)

## Time from `kvctl leader transfer` to the first write on the new leader (release build);
## RUNS=n transfers (default 10). See scripts/bench-transfer.sh.
.PHONY: bench-transfer
bench-transfer:
	bash scripts/bench-transfer.sh
## DURATION (60) s of CLIENTS (256) client puts on a fresh release cluster: throughput and
## whether the leader or term moved (exit 1 if so). See scripts/bench-steady.sh.
.PHONY: bench-steady
bench-steady:
	bash scripts/bench-steady.sh
## Snapshot catch-up speed: node 3 of a fresh release cluster is stopped, ~STATE_MB (100) MB
## are written, node 3 restarts and is caught up by snapshot: MB/s, and whether any election
## happened meanwhile. See scripts/bench-catchup.sh.
.PHONY: bench-catchup
bench-catchup:
	bash scripts/bench-catchup.sh
## KeyVal and etcd 3.4 side by side (etcd from the Debian registry, the load generator in
## ../shared/bench-etcd): puts at 1/64/256 clients, linearizable and lease gets, leader kill -9
## -> next put; ROUNDS (3) alternated rounds of DURATION (10) s, medians and ratios. ~15 min.
## See scripts/bench-vs-etcd.sh; results in docs/performance.md.
.PHONY: bench-etcd
bench-etcd:
	bash scripts/bench-vs-etcd.sh

## Many more simulator seeds than the default test run: make sim SEEDS=100000
SEEDS ?= 100000
sim:
	KEYVAL_SEEDS=$(SEEDS) $(CARGO) test --release -p keyval-core --test simulation -- --nocapture

## Jepsen-style chaos runs of real keyval processes (release build): schedules of SECS (60)
## seconds alternating 3 and 5 nodes for DURATION (600) seconds in total. A failure prints the
## command that replays its schedule: make chaos SEED=<seed> NODES=<n> SECS=<s>.
## Evidence per schedule in artifacts/chaos/<seed>/. `make test` runs a 3 x 20 s version.
.PHONY: chaos soak
chaos:
	$(CARGO) build --release -p native-node --bins
	KEYVAL_CHAOS_DURATION=$(or $(DURATION),600) KEYVAL_CHAOS_SEED=$(SEED) \
	KEYVAL_CHAOS_NODES=$(NODES) KEYVAL_CHAOS_SECS=$(SECS) \
	$(CARGO) test --release --test chaos -- --ignored --nocapture --exact chaos_long

## Soak: steady load with a fault every 30 s on a 3-node cluster for DURATION (1800) seconds;
## samples RSS, open fds, threads and WAL/snapshot bytes per node and fails on steady growth.
## Samples and the verdict in artifacts/soak/.
soak:
	$(CARGO) build --release -p native-node --bins
	KEYVAL_SOAK_DURATION=$(or $(DURATION),1800) \
	$(CARGO) test --release --test chaos -- --ignored --nocapture --exact soak
## One scenario script with its whole output (docs/scenarios.md):
## make scenario FILE=snapshots/scenarios/split_vote.scn
scenario:
	@test -n "$(FILE)" || { echo "usage: make scenario FILE=snapshots/scenarios/NAME.scn"; exit 2; }
	$(CARGO) run -q -p keyval-core --example run_scenario -- $(FILE)

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
.PHONY: cluster-start cluster-status cluster-stop cluster-logs cluster-add cluster-remove certs fuzz
## TLS=1 runs it with mutual TLS between nodes (certificates from `make certs`, made if missing).
cluster-start:
	TLS=$(TLS) bash scripts/cluster.sh start
cluster-status:
	TLS=$(TLS) bash scripts/cluster.sh status
cluster-stop:
	bash scripts/cluster.sh stop
cluster-logs:
	bash scripts/cluster.sh logs
## Grow the local cluster by one node (the next unused id N on 127.0.0.1:7000+N): member add,
## start it with --join, wait until the leader promotes it.
cluster-add:
	bash scripts/cluster.sh add
## Remove node ID from the local cluster: make cluster-remove ID=4 (or make cluster-remove 4).
ifeq (cluster-remove,$(firstword $(MAKECMDGOALS)))
REMOVE_ID := $(word 2,$(MAKECMDGOALS))
ifneq ($(REMOVE_ID),)
$(eval $(REMOVE_ID):;@:)
endif
endif
cluster-remove:
	bash scripts/cluster.sh remove $(or $(ID),$(REMOVE_ID))

## A throwaway peer CA, client CA and node certificates for the local cluster in data/certs
## (SAN node-<ID>, localhost, 127.0.0.1). For local use only.
certs:
	$(CARGO) run -q -p keyval-tests --example certs -- data/certs 1 2 3

## Each fuzz target for FUZZ_SECS seconds (default 60): execs/s per target, crashing inputs in
## fuzz/artifacts/. The seed and corpus replay also runs in `make test` (~2 s). Then the
## simulator's hostile-peer sweeps over HOSTILE_SEEDS seeds each (default 5000, ~4 min in
## release; `make test` runs 150 and 100, ~4 s).
FUZZ_SECS ?= 60
HOSTILE_SEEDS ?= 5000
fuzz:
	$(CARGO) run --release -p keyval-fuzz --bin keyval-fuzz -- all $(FUZZ_SECS)
	KEYVAL_SEEDS=$(HOSTILE_SEEDS) $(CARGO) test --release -p keyval-core --test simulation hostile_peer -- --nocapture
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
## Double quotes: the regex sits inside the single-quoted bash -c script below.
COVERAGE_IGNORE = "(web-viz|/tests/|benches/|\.cargo/registry)"
coverage:
	@command -v cargo-llvm-cov >/dev/null || $(CARGO) install cargo-llvm-cov --locked
	@rustup component list --installed | grep -q llvm-tools || rustup component add llvm-tools-preview
	# show-env points cargo (target dir, RUSTFLAGS, profile files) at llvm-cov's instrumented
	# build, so the keyval/kvctl the process tests spawn are built and measured there too.
	bash -c 'set -e; source <($(CARGO) llvm-cov show-env --export-prefix); \
	  $(CARGO) llvm-cov clean --workspace; \
	  $(CARGO) build -p native-node --bins; \
	  status=0; INSTA_UPDATE=no $(CARGO) test --no-fail-fast -p keyval-core -p native-node -p keyval-tests || status=$$?; \
	  $(CARGO) llvm-cov report --html --ignore-filename-regex $(COVERAGE_IGNORE); \
	  $(CARGO) llvm-cov report --summary-only --ignore-filename-regex $(COVERAGE_IGNORE) | tail -1; \
	  exit $$status'

## The container image (see Dockerfile) and the 3-node compose cluster (docker-compose.yml).
docker:
	docker build -t keyval:latest .
compose-up:
	docker compose up -d --build
compose-down:
	docker compose down
