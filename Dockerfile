# deepsvdd-serve: the serving image. ONNX Runtime (onnxruntime-gpu) runs on CUDA 13 + cuDNN 9
# where a GPU is given to the container, on the CPU otherwise. No torch.
#   docker build -t deepsvdd-serve .
#   docker compose up   (see docker-compose.yml; CPU only: docker-compose.cpu.yml)

# Builder: the same distribution and Python as the runtime image (Ubuntu 24.04, python3.12),
# so that the virtual environment and its compiled wheels run there unchanged.
FROM ubuntu:24.04 AS builder

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Ubuntu's archive keeps only the current patch release of a package: pinning it would break
# the build at the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY cli/ cli/
COPY client/ client/
COPY modelfile/ modelfile/
COPY service/ service/
COPY training/ training/

# The serving install: pyproject's base dependencies. torch is only in the `train` extra.
# ONNX Runtime is pinned to the release whose CUDA and cuDNN the runtime base carries.
ARG ORT_VERSION=1.31.1
RUN /opt/venv/bin/pip install --no-cache-dir . "onnxruntime-gpu==${ORT_VERSION}" \
    && if /opt/venv/bin/pip show torch >/dev/null 2>&1; then \
        echo "torch must not be in the serving image" >&2; exit 1; \
    fi


# Runtime: CUDA 13 + cuDNN 9, what onnxruntime-gpu 1.31 links against (it loads
# libcublasLt.so.13 and says "Require cuDNN 9.* and CUDA 13.*" when they are missing).
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 AS runtime

LABEL org.opencontainers.image.title="deepsvdd-serve" \
      org.opencontainers.image.description="Deep SVDD one-class image anomaly detection over HTTP (ONNX Runtime, FastAPI)" \
      org.opencontainers.image.licenses="MIT"

ENV DEBIAN_FRONTEND=noninteractive

# See the builder stage for why the packages are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 deepsvdd \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin deepsvdd

COPY --from=builder /opt/venv /opt/venv
# The shipped models; mount a volume or a directory at /app/models to serve others.
COPY models/ /app/models/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEEPSVDD_MODELS_DIR=/app/models

WORKDIR /app
# The numeric id of the deepsvdd user made above: resolvable without the image's passwd
# (Kubernetes runAsNonRoot checks it).
USER 10001:10001
# HTTP (/score, /v2, /metrics) and the Open Inference Protocol over gRPC (DEEPSVDD_GRPC_PORT).
EXPOSE 8000 8001

# Healthy once every model is loaded and warmed up (urlopen raises on the 503 before that).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]

CMD ["deepsvdd", "serve", "--host", "0.0.0.0", "--port", "8000", "--models-dir", "/app/models"]
