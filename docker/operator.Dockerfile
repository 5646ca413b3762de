# robofleet-operator: the controller for InferenceService, SafetyPolicy and SensorSim.
# Build from the repository root:  docker build -f docker/operator.Dockerfile -t robofleet-operator .
# Multi-stage: the Rust toolchain builds a release binary; the runtime is Debian slim (glibc), no
# shell tools added, a numeric non-root user (Pod Security "restricted" can verify it).

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p robofleet-operator --bin robofleet-operator \
    && install -D -m 0755 target/release/robofleet-operator /out/robofleet-operator

FROM debian:12.8-slim
COPY --from=build /out/robofleet-operator /usr/local/bin/robofleet-operator
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/robofleet-operator"]
