#!/usr/bin/env bash
# `make web-test`: every test of the playground. Native engine tests, the reducer's unit tests in
# headless Chromium (wasm-bindgen-test), a release build, then the end-to-end browser tests.
# Screenshots land in artifacts/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/web-viz/e2e/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export TRUNK_SKIP_VERSION_CHECK=true
# A smaller wasm at the same simulator speed (measured: 948 -> 703 KB, ~5M events/s both).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1

bash scripts/install-web-tools.sh

echo "==> native engine and scenario tests (with the core's mutations, for the break-Raft menu)"
cargo test -p web-viz --features mutations

echo "==> reducer and scenario-player tests in headless Chromium (wasm-bindgen-test)"
CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver} \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test -p web-viz --target wasm32-unknown-unknown --test wasm_reducer --test wasm_scenario

echo "==> release build"
trunk build --release
wasm=$(ls web-viz/dist/*.wasm)
echo "wasm size: $(stat -c %s "$wasm") bytes ($(gzip -9c "$wasm" | wc -c) gzipped)"

echo "==> live-mode fixture frames (from the real core)"
mkdir -p web-viz/e2e/.cache
cargo run -q -p web-viz --example live_fixture -- 6 1 > web-viz/e2e/.cache/frames.jsonl

echo "==> keyval binaries for the live-mode test against a real cluster"
cargo build -q -p native-node --bins
export KEYVAL_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/keyval"

echo "==> end-to-end browser tests"
rm -rf artifacts/traces
(cd web-viz/e2e && npm test)

echo "==> the trace the browser exported replays in cargo test"
WEB_VIZ_TRACES="$PWD/artifacts/traces" cargo test -q -p web-viz --test replay saved_traces_replay_exactly -- --nocapture
