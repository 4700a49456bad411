# The runtime-only serving image: ONNX Runtime, tokenizers, NumPy and the server; no torch,
# no transformers. Artifacts are mounted, never baked in:
#   docker build -t onnx-engine .
#   docker run -p 8000:8000 -v /srv/artifacts:/artifacts:ro onnx-engine clf=/artifacts/clf
# For Ray Serve (KubeRay), build with --build-arg EXTRAS=cpu,serve,ray (see deploy/).
FROM python:3.11-slim

ARG EXTRAS=cpu,serve
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY engine engine
COPY export export
COPY onnx_engine onnx_engine
RUN python -m pip install -c constraints.txt ".[${EXTRAS}]" && rm -rf /src

RUN useradd --create-home --uid 10001 engine
USER engine
WORKDIR /home/engine
EXPOSE 8000

# The readiness route answers 200 once every model is loaded and its batcher runs.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["onnx-engine", "serve", "--host", "0.0.0.0", "--port", "8000"]
