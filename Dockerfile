# picu-endotype: the CDS Hooks service under gunicorn.
# Build:  docker build -t picu-endotype .
# Run:    docker run --init -p 8080:8080 -v "$PWD/settings.toml:/config/settings.toml:ro" \
#           -e PICU_ENDOTYPE_CONFIG=/config/settings.toml picu-endotype
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app

# Dependencies first (cached while only the source changes), then the project itself.
# devtools/pyproject.toml only names the development-tools workspace member for the lock check;
# the tools themselves are neither copied nor installed (--no-dev).
COPY pyproject.toml uv.lock ./
COPY devtools/pyproject.toml ./devtools/
RUN uv sync --locked --no-dev --no-install-project
COPY README.md ./
COPY cds_service ./cds_service
COPY fhir_mappings ./fhir_mappings
COPY model ./model
RUN uv sync --locked --no-dev --no-editable

RUN useradd --create-home --uid 10001 picu \
    && mkdir -p /app/var \
    && chown picu:picu /app/var
USER picu

ENV PATH="/app/.venv/bin:${PATH}"
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

# Settings come from the TOML file named by PICU_ENDOTYPE_CONFIG and PICU_ENDOTYPE_* variables.
CMD ["picu-endotype", "serve", "--host", "0.0.0.0", "--port", "8080"]
