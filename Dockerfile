# netalloc controller image: `docker build -t ghcr.io/netalloc/netalloc:0.1.0 .`
#
# The base is pinned by digest (python:3.11-slim-bookworm). The digest was read from public
# Dockerfiles, not pulled: no Docker engine runs on the machine this was written on. Check it with
# `docker buildx imagetools inspect python:3.11-slim-bookworm` and update both stages together.
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY controller ./controller
COPY crds ./crds
# Only what `netalloc run` needs: the package and its runtime dependencies (no dev, no research extra).
RUN python -m venv /opt/netalloc \
    && /opt/netalloc/bin/pip install --no-cache-dir . \
    && /opt/netalloc/bin/pip uninstall --yes pip setuptools

FROM ${BASE}
ENV PATH=/opt/netalloc/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/netalloc /opt/netalloc
# 65532 is the conventional "nonroot" uid/gid; the Deployment runs with a read-only root filesystem.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["netalloc"]
CMD ["run", "--ec2", "aws"]
