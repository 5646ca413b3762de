# inference-sidecar: ONNX Runtime behind the Open Inference Protocol, on every selected robot.
# Build from the repository root (CPU):
#   docker build -f docker/inference-sidecar.Dockerfile -t inference-sidecar .
# CUDA variant (docs/install.md, "Container images"): the same file with a CUDA runtime base, the
# onnxruntime-gpu wheel and the crate's `gpu` feature:
#   docker build -f docker/inference-sidecar.Dockerfile -t inference-sidecar:cuda \
#     --build-arg RUNTIME_BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg ORT_PACKAGE=onnxruntime-gpu --build-arg FEATURES=gpu .
# The binary loads ONNX Runtime at run time (ORT_DYLIB_PATH): the shared library comes from the
# onnxruntime wheel, the same one the tests use (tests/requirements.txt). ONNX Runtime needs glibc,
# so every base here is glibc-based (never Alpine/musl). The build stage (bookworm, glibc 2.36) must
# not be newer than the runtime base.
ARG RUNTIME_BASE=debian:12.8-slim
ARG ORT_PACKAGE=onnxruntime
ARG ORT_VERSION=1.32.0
ARG FEATURES=""

FROM rust:1.95.0-slim-bookworm AS build
ARG FEATURES
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p inference-sidecar --bin inference-sidecar --features "${FEATURES}" \
    && install -D -m 0755 target/release/inference-sidecar /out/inference-sidecar

FROM python:3.12.8-slim-bookworm AS ort
ARG ORT_PACKAGE
ARG ORT_VERSION
RUN pip install --no-cache-dir --no-deps --target /wheel "${ORT_PACKAGE}==${ORT_VERSION}" \
    && mkdir -p /out \
    && cp -L /wheel/onnxruntime/capi/libonnxruntime.so.* /out/ \
    && for f in /wheel/onnxruntime/capi/libonnxruntime_providers_*.so; do [ -e "$f" ] && cp -L "$f" /out/ || true; done \
    && ln -s "$(basename /out/libonnxruntime.so.*)" /out/libonnxruntime.so

FROM ${RUNTIME_BASE}
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/inference-sidecar /usr/local/bin/inference-sidecar
COPY --from=ort /out/ /opt/onnxruntime/lib/
ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so \
    LD_LIBRARY_PATH=/opt/onnxruntime/lib
USER 65532:65532
EXPOSE 8000 8002
ENTRYPOINT ["/usr/local/bin/inference-sidecar"]
CMD ["serve"]
