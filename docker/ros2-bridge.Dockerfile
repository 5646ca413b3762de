# ros2-bridge: the safety monitor (`ros2-bridge safety`), the sensor simulator (`sensor-sim`) and
# the ROS 2 bridges; pure Rust DDS (rustdds), no ROS installation needed.
# Build from the repository root:  docker build -f docker/ros2-bridge.Dockerfile -t ros2-bridge .
# Multi-stage, Debian slim runtime (glibc), numeric non-root user.

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ros2-bridge --bin ros2-bridge \
    && install -D -m 0755 target/release/ros2-bridge /out/ros2-bridge

FROM debian:12.8-slim
COPY --from=build /out/ros2-bridge /usr/local/bin/ros2-bridge
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ros2-bridge"]
