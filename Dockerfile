# chatterbox container image.
#
#   docker build -t chatterbox .
#   docker run -p 8080:8080 -v chatterbox-data:/data chatterbox
#
# Three stages: `planner` reduces the sources to what dependency resolution
# needs, `builder` compiles the dependencies in a layer of their own (reused
# until Cargo.toml or Cargo.lock change) and then the crate, and the final
# stage holds only the release binary and static/. Only the server is built:
# none of the load tester's dependencies are compiled. Works with the classic
# builder and with BuildKit; needs no registry beyond crates.io.

# --- planner: the dependency skeleton, and the sources the binary needs -----
FROM rust:1-bookworm AS planner
WORKDIR /src
COPY . .
# The workspace has two packages: the server (the root) and the load tester
# (loadtest/), which the image does not build. Cargo needs every member's
# manifest, and refuses a manifest whose package has no target or names one
# ([[bin]], [[bench]], ...) whose source file is missing, so the dependency
# layer gets each member's Cargo.toml and a stub at the path cargo itself
# reports for every lib, every bin, and every target of a kind that its
# package's manifest declares; targets cargo only discovers (examples/*.rs,
# tests/*.rs when there is no [[example]], [[test]]) need none, so adding one
# keeps the cache. Whatever targets the manifests name after a merge, the
# stubs follow, and a change to the sources alone leaves the skeleton
# byte-identical (so the dependency layer below stays cached). Build scripts
# are copied as they are.
RUN set -eu; \
    mkdir -p /skeleton; \
    cp Cargo.lock /skeleton/; \
    cargo metadata --no-deps --offline --format-version 1 > /tmp/metadata; \
    grep -o '"manifest_path":"/src/[^"]*"' /tmp/metadata \
      | sed 's/^"manifest_path":"\/src\///; s/"$//' > /tmp/manifests; \
    grep -qx Cargo.toml /tmp/manifests; \
    while read -r manifest; do \
      mkdir -p "/skeleton/$(dirname "$manifest")"; \
      cp "$manifest" "/skeleton/$manifest"; \
      echo "manifest: $manifest"; \
    done < /tmp/manifests; \
    sed 's/{"kind":/\n&/g' /tmp/metadata \
      | sed -n 's/^{"kind":\["\([^"]*\)".*"src_path":"\/src\/\([^"]*\)".*/\1 \2/p' \
      > /tmp/targets; \
    test -s /tmp/targets; \
    while read -r kind path; do \
      manifest=$(dirname "$path"); \
      until [ -f "$manifest/Cargo.toml" ]; do manifest=$(dirname "$manifest"); done; \
      case "$kind" in \
        custom-build) stub=copy ;; \
        lib|rlib|dylib|cdylib|staticlib|proc-macro) stub=empty ;; \
        bin) stub=main ;; \
        *) if grep -q "^[[:space:]]*\[\[$kind\]\]" "$manifest/Cargo.toml"; then stub=main; else continue; fi ;; \
      esac; \
      mkdir -p "/skeleton/$(dirname "$path")"; \
      case "$stub" in \
        copy) cp "$path" "/skeleton/$path" ;; \
        empty) : > "/skeleton/$path" ;; \
        main) echo 'fn main() {}' > "/skeleton/$path" ;; \
      esac; \
      echo "stub ($stub): $path"; \
    done < /tmp/targets; \
    while read -r manifest; do \
      member=$(dirname "$manifest"); \
      [ "$member" = . ] && continue; \
      rm -rf "$member"; \
      cp -a "/skeleton/$member" "$member"; \
      echo "skeleton only: $member"; \
    done < /tmp/manifests; \
    rm -rf static docs tests README.md
# static/ goes into the image as files, not into the binary: the builder takes
# the sources from here without it, so a change to the page alone reuses the
# compiled binary. Docs and integration tests are not compiled into the
# binary either, so editing them does not rebuild it; nor is the load tester:
# the builder gets only its skeleton, so editing it rebuilds nothing here.
# (The stage labels let scripts/docker-smoke.sh prune its stale build stages.)
LABEL chatterbox.build-stage=planner

# --- builder: dependencies first, then the crate -----------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_STRIP=symbols
COPY --from=planner /skeleton/ ./
RUN cargo build --release --locked -p chatterbox --bin chatterbox
COPY --from=planner /src/ ./
# The real sources may be older than the stub build: touch them so cargo
# rebuilds the crate, and make sure the result is the server, not the stub.
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p chatterbox --bin chatterbox \
 && ./target/release/chatterbox --version | grep -q '^chatterbox '
LABEL chatterbox.build-stage=builder

# --- runtime ------------------------------------------------------------------
FROM debian:bookworm-slim
# A fixed numeric id, so volume ownership is predictable and orchestrators
# can verify runAsNonRoot.
RUN groupadd --system --gid 10001 chatterbox \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin chatterbox \
 && mkdir -p /data \
 && chown 10001:10001 /data
COPY --from=builder /src/target/release/chatterbox /usr/local/bin/chatterbox
COPY static/ /app/static/
WORKDIR /app
ENV HOST=0.0.0.0 \
    PORT=8080 \
    DB_PATH=/data/chatterbox.db \
    STATIC_DIR=/app/static \
    RUST_LOG=info
# A named volume mounted here starts as a copy of this directory, owned by
# the chatterbox user, so the server can create its database in it.
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
# The binary probes GET /health on HOST:PORT itself: no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["chatterbox", "healthcheck"]
# The server is PID 1 and handles SIGTERM itself: `docker stop` closes the
# sockets with 1001, stores every accepted message and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["chatterbox"]

# Last, so that changing them rebuilds nothing. SOURCE_URL's default is a
# placeholder until the project has a public home: override it with
# --build-arg SOURCE_URL=... (the smoke test passes REVISION, the commit).
ARG SOURCE_URL=https://github.com/chatterbox-chat/chatterbox
ARG REVISION=unknown
LABEL org.opencontainers.image.title="chatterbox" \
      org.opencontainers.image.description="A real-time WebSocket chat server: named rooms, presence, durable SQLite history." \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.revision="${REVISION}"
