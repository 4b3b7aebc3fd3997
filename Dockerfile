# One image for the four services; the command picks the service. Tag it with an immutable
# version (the Helm chart refuses latest) and deploy it by digest:
#   docker build -t registry.example.com/twoway/twoway:0.1.0 .
#   docker run --rm -e TWOWAY_... registry.example.com/twoway/twoway:0.1.0 twoway-matching run
# The operators' toolbox (the `twoway` toolkit: dead letters, ACLs, publish, tail) is a
# separate target, so the service image carries the runtime only:
#   docker build --target toolbox -t registry.example.com/twoway/twoway-toolbox:0.1.0 .
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir "uv==0.13.8"
# Byte-code compiled at build time: a container (and each compose worker process it spawns)
# starts without compiling every module first.
ENV UV_COMPILE_BYTECODE=1
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY shared shared
COPY services services
# The development package (local stack, demo, toolkit, test support) is a workspace member:
# its pyproject.toml lets uv read the lock, and nothing of it is installed.
COPY dev/pyproject.toml dev/pyproject.toml
RUN uv sync --frozen --no-dev --no-editable \
    --package twoway-matching --package twoway-scheduling \
    --package twoway-notifications --package twoway-progress

FROM build AS build-toolbox
COPY dev dev
RUN uv sync --frozen --no-dev --no-editable --package twoway-dev

FROM python:3.11-slim AS toolbox
RUN useradd --system --uid 10001 twoway
COPY --from=build-toolbox /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
CMD ["twoway", "--help"]

FROM python:3.11-slim
RUN useradd --system --uid 10001 twoway
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8081 8082 8083 8084
CMD ["twoway-matching", "run"]
