# The MCP server image. Its digest is measured into the CCE policy, so keep it reproducible:
# pinned base, pinned dependencies (pyproject.toml), no secrets, nothing fetched at run time.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY app/ app/
COPY policy/__init__.py policy/release_policy.py app/capabilities.toml policy/
RUN pip install . && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mcp

USER 10001
EXPOSE 8080
ENTRYPOINT ["mcp-tee", "serve", "--host", "0.0.0.0"]
