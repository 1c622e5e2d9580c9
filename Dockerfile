# The fleet image for production (docker-compose.yml). Not built in this repo's CI: the
# development machines have no Docker engine.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin fleet

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 fleet
COPY --from=build /src/target/release/fleet /usr/local/bin/fleet
COPY topology.yaml /etc/storefleet/topology.yaml
COPY schemas /etc/storefleet/schemas
USER fleet
WORKDIR /etc/storefleet
ENTRYPOINT ["fleet", "--topology", "/etc/storefleet/topology.yaml"]
