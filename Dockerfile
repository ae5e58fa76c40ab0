# The MCP server image. Its digest is measured into the CCE policy, and the release key is bound to
# that measurement, so the same commit must give the same image (docs/ci.md, "Reproducible image"):
# - the base is a stack setting pinned by digest (no default: a build without it fails);
# - every Python package comes from a hashed lock file, then the project itself with --no-deps;
# - SOURCE_DATE_EPOCH is required: it fixes wheel and .pyc timestamps (checked-hash .pyc), and
#   file mtimes are NOT clamped yet with the docker builder (docs/ci.md), so a rebuild of the same
#   commit there can change the digest and with it the pinned hostdata;
# - no secrets, nothing fetched at run time, and the server runs as a non-root user.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

ARG SOURCE_DATE_EPOCH

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements/build.txt requirements/runtime.txt requirements/
RUN test -n "${SOURCE_DATE_EPOCH}" || { echo "build arg SOURCE_DATE_EPOCH is required" >&2; exit 1; } \
 && pip install --require-hashes --no-deps -r requirements/build.txt \
 && pip install --require-hashes --no-deps -r requirements/runtime.txt

COPY pyproject.toml ./
COPY app/ app/
COPY policy/__init__.py policy/release_policy.py policy/
# A fixed passwd line instead of useradd, whose /etc/shadow entry carries the build day.
RUN pip install --no-deps --no-build-isolation --no-index . \
 && rm -rf build ./*.egg-info \
 && echo "mcp:x:10001:10001::/nonexistent:/usr/sbin/nologin" >> /etc/passwd \
 && echo "mcp:x:10001:" >> /etc/group

USER 10001:10001
# TEE mode serves HTTPS on 8443: a non-root user cannot bind 443 (the port comes from the command).
EXPOSE 8443
ENTRYPOINT ["mcp-tee", "serve", "--host", "0.0.0.0"]
