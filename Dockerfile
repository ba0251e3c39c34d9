# keysentry in a container:
#   docker build --build-arg KEYSENTRY_GIT_COMMIT="$(git rev-parse --short HEAD)" -t keysentry .
#   docker run --rm -v "$PWD:/src:ro" keysentry scan /src
# As the daemon, with the host's install (README "Run as a service": config
# root:keysentry 0640, store owned by keysentry), run as that user:
#   docker run -d --user "$(id -u keysentry):$(id -g keysentry)" --env-file /etc/keysentry/env \
#       -v /etc/keysentry:/etc/keysentry:ro -v /var/lib/keysentry:/var/lib/keysentry \
#       -v /var/log:/var/log:ro keysentry daemon --config /etc/keysentry/keysentry.yaml --log-format json
# The final image holds the statically linked binary and CA certificates and
# nothing else (no shell, no package manager, no git), and runs as uid 10001.
# `scan --git`, `--staged` and watching repositories drive the git CLI: for
# those, derive an image that adds git, or use the binary on the host.

FROM rust:1-bookworm AS build
# musl-gcc: the bundled SQLite and ring are C, compiled for the musl target.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY . .
# build.rs takes the commit for `--version` from git; .git is not in the
# build context (.dockerignore), so it comes in as a build argument.
ARG KEYSENTRY_GIT_COMMIT=
ENV KEYSENTRY_GIT_COMMIT=${KEYSENTRY_GIT_COMMIT}
RUN set -eu; \
    target="$(uname -m)-unknown-linux-musl"; \
    rustup target add "$target"; \
    export "CC_$(echo "$target" | tr - _)=musl-gcc"; \
    cargo build --release --locked --package keysentry --bin keysentry --target "$target"; \
    install -D -m 0755 "target/$target/release/keysentry" /out/keysentry; \
    install -d -m 0700 /out/state; \
    install -d -m 1777 /out/tmp

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/keysentry /usr/local/bin/keysentry
# The store (SQLite); mount a volume here for the daemon. SQLite may spill
# large sorts to /tmp.
COPY --from=build --chown=10001:10001 /out/state /var/lib/keysentry
COPY --from=build /out/tmp /tmp
ENV KEYSENTRY_STATE_DIR=/var/lib/keysentry \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
WORKDIR /src
ENTRYPOINT ["/usr/local/bin/keysentry"]
CMD ["scan", "."]
