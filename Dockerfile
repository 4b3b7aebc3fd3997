# One image for the three services; the command picks the service:
#   docker build -t twoway:latest .
#   docker run --rm -e TWOWAY_... twoway:latest twoway-matching run
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir "uv==0.13.8"
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY shared shared
COPY services services
RUN uv sync --frozen --no-dev --all-packages --no-editable

FROM python:3.11-slim
RUN useradd --system --uid 10001 twoway
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8081 8082 8083
CMD ["twoway-matching", "run"]
