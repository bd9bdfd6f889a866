# syntax=docker/dockerfile:1.7
# One multi-target build for every Caldera image (non-root, pinned base):
#   docker build --target controller -t caldera/controller:0.1.0 .
#   docker build --target router     -t caldera/router:0.1.0 .
#   docker build --target enginesim  -t caldera/enginesim:latest .
# Pin harder with a digest: --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest>.
# deploy/kind/up.sh builds and loads all three; this path is not exercised in CI (no Docker engine).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/caldera
# Dependencies first (cached across source edits), then the packages themselves.
COPY pyproject.toml README.md ./
COPY caldera/ caldera/
COPY modelserving/ modelserving/
COPY topology/ topology/
COPY placement/ placement/
COPY autoscaler/ autoscaler/
COPY router/ router/
COPY webhooks/ webhooks/
COPY enginesim/ enginesim/
RUN /opt/caldera/bin/pip install . && /opt/caldera/bin/python -m compileall -q /opt/caldera

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric UID/GID so `runAsNonRoot` can be verified by the kubelet.
RUN groupadd --gid 65532 caldera \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin caldera
COPY --from=build /opt/caldera /opt/caldera
ENV PATH=/opt/caldera/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["caldera"]

# `caldera controller`: ModelServing, placement, autoscaler and the admission webhooks.
FROM runtime AS controller
EXPOSE 8080 9090 9443
CMD ["controller"]

# `caldera router`: the OpenAI-compatible router.
FROM runtime AS router
EXPOSE 8080
CMD ["router", "--host", "0.0.0.0", "--port", "8080"]

# The engine simulator (stands in for vLLM/SGLang without GPUs); container args are its flags,
# e.g. `--model Qwen/Qwen3-8B --profile 8b-h100`.
FROM runtime AS enginesim
EXPOSE 8000
ENTRYPOINT ["python", "-m", "enginesim", "--host", "0.0.0.0", "--port", "8000"]
