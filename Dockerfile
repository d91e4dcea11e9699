# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target server -t slamctl-triton .   # stock Triton + model_repository/ (GPU, TensorRT)
#   docker build --target client -t slamctl-client .   # the slamctl client, no torch
#
# The server is NVIDIA's stock Triton, pinned: 24.10 ships Triton 2.51, the version PyTriton
# 0.7.0 embeds for `slamctl serve`, so both speak the same protocol and expose the same
# metrics. The onnxruntime backend runs the models with the TensorRT execution accelerator
# set in each config.pbtxt; engines are cached under /trt_cache (mount a volume there, one
# per GPU type), so they are built once, not on every start.

ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

FROM ${TRITON_IMAGE} AS server
# the image's unprivileged user (uid 1000) owns the engine cache
RUN mkdir -p /trt_cache && chown triton-server:triton-server /trt_cache
# slam_encoder_files (the encoded wire path) decodes cells with slamctl's own code and Pillow
RUN pip install --no-cache-dir "pillow>=10"
COPY slamctl/ /opt/slamctl/slamctl/
COPY --chown=triton-server:triton-server model_repository/ /models/
COPY deploy/triton-serve.sh /usr/local/bin/slamctl-triton-serve
USER triton-server
VOLUME ["/trt_cache"]
EXPOSE 8000 8001 8002
# The first start builds the TensorRT engines (minutes on a large GPU): a long start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=900s --retries=3 \
    CMD curl -fsS http://localhost:8000/v2/health/ready || exit 1
# NVIDIA's entrypoint stays (it checks the driver's compatibility before Triton starts);
# the CMD is tritonserver with slamctl's flags (deploy/triton-serve.sh: complete configs never
# auto-completed, strict readiness, admin APIs behind a token, gRPC TLS when
# SLAMCTL_TLS_CERT/SLAMCTL_TLS_KEY name a mounted certificate), so an operator can override it.
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh"]
CMD ["slamctl-triton-serve"]

FROM python:3.11-slim AS client
WORKDIR /src
COPY pyproject.toml README.md ./
COPY slamctl/ slamctl/
COPY client/ client/
COPY cli/ cli/
COPY training/ training/
COPY export/ export/
COPY serving/ serving/
# the base install is the client: numpy, Pillow, Typer, rich, tritonclient, prometheus-client
RUN pip install --no-cache-dir . && useradd --create-home slamctl
USER slamctl
WORKDIR /data
ENTRYPOINT ["slamctl"]
CMD ["--help"]
