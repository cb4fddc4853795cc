#!/usr/bin/env bash
# Installs what building and testing the playground (web-viz) needs, on a fresh Debian machine
# or a warm one: each tool only when its version differs. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

TRUNK_VERSION=0.21.14
# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

if [ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]; then
  # 0.22 needs a newer rustc than the machine's 1.95.
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  # Without --locked: its lock file wants a webpki-roots the registry lacks.
  cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi

# playwright-core, ws and binaryen (wasm-opt 132, which trunk uses) for the browser tests.
(cd web-viz/e2e && npm ci --no-audit --no-fund --loglevel=error)
echo "web tools ready: $(trunk --version), wasm-bindgen $WB_VERSION, $(web-viz/e2e/node_modules/.bin/wasm-opt --version)"
