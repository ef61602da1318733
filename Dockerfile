# netalloc controller image: `docker build -t ghcr.io/netalloc/netalloc:0.1.0 .`
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN python -m venv /opt/netalloc \
    && /opt/netalloc/bin/pip install --no-cache-dir .

FROM python:3.11-slim
ENV PATH=/opt/netalloc/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/netalloc /opt/netalloc
# 65532 is the conventional "nonroot" uid/gid; the Deployment runs with a read-only root filesystem.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["netalloc"]
CMD ["run", "--ec2", "aws"]
