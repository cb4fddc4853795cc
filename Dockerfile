# syntax=docker/dockerfile:1
# KeyVal node image: `keyval` and `kvctl` on a small Debian runtime, running as a non-root user,
# with the data directory on a volume and the built playground for `--ui`.
#
#   docker build -t keyval .            (make docker)
#   docker run -p 7001:7001 -v kv1:/var/lib/keyval keyval   (a 1-node cluster)
#
# One port (7001) carries everything: peers, clients, /metrics, /livez, /readyz, /events, the UI.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build: release binaries -------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p native-node --bins \
 && install -D -m 0755 target/release/keyval target/release/kvctl -t /out/bin

# ---- ui: the playground (web-viz) built with trunk, as scripts/install-web-tools.sh does ------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS ui
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-unknown-unknown \
 && cargo install trunk --version 0.21.14 --locked
WORKDIR /src
COPY Cargo.lock .
# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
RUN cargo install wasm-bindgen-cli --version \
    "$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)"
COPY . .
RUN cd web-viz/e2e && npm ci --no-audit --no-fund --loglevel=error
RUN PATH="/src/web-viz/e2e/node_modules/.bin:$PATH" TRUNK_SKIP_VERSION_CHECK=true \
    trunk build --release --dist /out/ui

# ---- runtime ------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
# curl only for the HEALTHCHECK below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/keyval keyval \
 && install -d -o keyval -g keyval -m 0700 /var/lib/keyval
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=ui /out/ui/ /usr/share/keyval/ui/
USER 10001:10001
VOLUME /var/lib/keyval
EXPOSE 7001
# Liveness only: a node without quorum is alive (and must not be restarted), just not ready.
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:7001/livez || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["keyval"]
CMD ["--id", "1", "--listen", "0.0.0.0:7001", "--peers", "1=127.0.0.1:7001", "--data-dir", "/var/lib/keyval", "--log-format", "json"]
