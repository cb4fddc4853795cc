#!/usr/bin/env bash
# `make web-test`: every test of the playground. Native engine tests, the reducer's unit tests in
# headless Chromium (wasm-bindgen-test), a release build, then the end-to-end browser tests.
# Screenshots land in artifacts/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/web-viz/e2e/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export TRUNK_SKIP_VERSION_CHECK=true

bash scripts/install-web-tools.sh

echo "==> native engine and scenario tests"
cargo test -p web-viz

echo "==> reducer unit tests in headless Chromium (wasm-bindgen-test)"
CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver} \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test -p web-viz --target wasm32-unknown-unknown --test wasm_reducer

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
(cd web-viz/e2e && npm test)
