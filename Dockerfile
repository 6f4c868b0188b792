# Radio24 image: one binary, any role (`serve --role api|host|all`, `migrate`).
#   docker build -t radio24 .                          # both roles
#   docker build --build-arg FEATURES=api -t radio24-api .    # API only (no host engine)
#   docker build --build-arg FEATURES=host -t radio24-host .  # host only (no database driver)
FROM rust:1-bookworm AS build
ARG FEATURES="api,host"
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY config config
RUN cargo build --release --locked --no-default-features --features "$FEATURES" \
 && cp target/release/radio24 /radio24

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/radio24 --create-home radio24
COPY --from=build /radio24 /usr/local/bin/radio24
COPY config /etc/radio24
ENV RADIO24_CONFIG_DIR=/etc/radio24 \
    RADIO24_ENV=production \
    RADIO24_LOG_FORMAT=json
USER radio24
WORKDIR /var/lib/radio24
EXPOSE 8080 8082
ENTRYPOINT ["radio24"]
CMD ["serve", "--role", "all"]
