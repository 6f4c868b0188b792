# syntax=docker/dockerfile:1
# Radio24 image: one binary, every role (`serve --role api|host|all`, `migrate`, `healthcheck`),
# the web app, and espeak-ng for the offline voice.
#   docker build -t radio24 .                                   # both roles (default)
#   docker build --build-arg FEATURES=api -t radio24-api .      # API only (no host engine)
#   docker build --build-arg FEATURES=host -t radio24-host .    # host only (no database driver)
# Checked by tests/api/deploy_files.rs (ports, env names, commands); see docs/deploy.md.

# --- Rust toolchain with cargo-chef; cmake builds the bundled libopus -----------------------
FROM rust:1-bookworm AS chef
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/* \
 && cargo install cargo-chef --locked
WORKDIR /src

# --- The dependency recipe: changes only when Cargo.toml / Cargo.lock do ---------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- Dependencies (a cached layer), then the binary ------------------------------------------
FROM chef AS build
ARG FEATURES="api,host"
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --no-default-features --features "$FEATURES" \
    --recipe-path recipe.json
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY config config
COPY benches benches
RUN cargo build --release --locked --no-default-features --features "$FEATURES" --bin radio24 \
 && cp target/release/radio24 /radio24

# --- The web app: a static export (frontend/out) ---------------------------------------------
FROM node:20-bookworm-slim AS web
WORKDIR /web
ENV NEXT_TELEMETRY_DISABLED=1
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci
COPY frontend/ ./
RUN npm run build

# --- Runtime: small, non-root ----------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates espeak-ng \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/radio24 --create-home radio24 \
 && mkdir -p /var/lib/radio24/data /var/lib/radio24/archive \
 && chown radio24:radio24 /var/lib/radio24/data /var/lib/radio24/archive
COPY --from=build /radio24 /usr/local/bin/radio24
COPY --from=web /web/out /usr/share/radio24/web
COPY config /etc/radio24
# production.toml listens on 0.0.0.0; JSON logs; the web app where the image keeps it.
ENV RADIO24_CONFIG_DIR=/etc/radio24 \
    RADIO24_ENV=production \
    RADIO24_LOG_FORMAT=json \
    RADIO24__SERVER__WEB_DIR=/usr/share/radio24/web
USER radio24
WORKDIR /var/lib/radio24
# 8080: the API (and role all); 8082: the host's bus (role host). PORT overrides both.
EXPOSE 8080 8082
# Checks role all's port (or PORT); a host container checks with --role host (compose does).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["radio24", "healthcheck"]
ENTRYPOINT ["radio24"]
CMD ["serve", "--role", "all"]
