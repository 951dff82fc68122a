# Tollgate images. Targets: `gateway` (the `tollgate` binary), `metering` (the `tollgate-metering` consumer)
# and `mock-upstream` (a keyless demo upstream).
#   docker build --target gateway -t tollgate/gateway:0.1.0 .
FROM rust:1.95-bookworm AS builder
# librdkafka is built from source by rdkafka's cmake-build feature.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tollgate-gateway -p tollgate-metering -p tollgate-tests \
      --bin tollgate --bin tollgate-metering --bin tollgate-mock-upstream

FROM debian:bookworm-slim AS runtime-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /data --create-home tollgate
USER tollgate
WORKDIR /data

FROM runtime-base AS gateway
COPY --from=builder /src/target/release/tollgate /usr/local/bin/tollgate
COPY examples /etc/tollgate
ENV TOLLGATE_LISTEN=0.0.0.0:8080 TOLLGATE_DB=/data/tollgate.db
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["--config", "/etc/tollgate/quickstart.toml"]

FROM runtime-base AS metering
COPY --from=builder /src/target/release/tollgate-metering /usr/local/bin/tollgate-metering
ENV TOLLGATE_METERING_HTTP_ADDR=0.0.0.0:9465
EXPOSE 9465
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s CMD ["/usr/local/bin/tollgate-metering", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tollgate-metering"]

FROM runtime-base AS mock-upstream
COPY --from=builder /src/target/release/tollgate-mock-upstream /usr/local/bin/tollgate-mock-upstream
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:9100/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/tollgate-mock-upstream", "--listen", "0.0.0.0:9100"]
