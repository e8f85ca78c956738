# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target api    -t gradaudit-api .     # Flask API under gunicorn; also runs `gradaudit migrate`
#   docker build --target worker -t gradaudit-worker .  # Celery worker with torch (CUDA wheels from PyPI)

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 gradaudit \
    && install -d -o gradaudit -g gradaudit /var/lib/gradaudit /var/lib/gradaudit/artifacts
WORKDIR /app
COPY pyproject.toml ./
# Requirement lists taken from pyproject.toml alone, so that installing them is a layer that
# code changes do not invalidate (the worker's torch is gigabytes).
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
open('/tmp/requirements-api.txt', 'w').write('\n'.join(p['dependencies'])); \
open('/tmp/requirements-worker.txt', 'w').write('\n'.join(p['dependencies'] + p['optional-dependencies']['worker']))"

FROM base AS source
COPY api ./api
COPY worker ./worker
COPY models ./models
COPY migrations ./migrations
COPY gradaudit ./gradaudit
COPY cli ./cli

FROM base AS api
RUN pip install -r /tmp/requirements-api.txt
COPY --from=source /app /app
RUN pip install --no-compile . && rm -rf build *.egg-info
COPY --chmod=0755 boot.sh /usr/local/bin/boot.sh
USER gradaudit
EXPOSE 8000
CMD ["boot.sh"]

FROM base AS worker
RUN pip install -r /tmp/requirements-worker.txt
COPY --from=source /app /app
RUN pip install --no-compile ".[worker]" && rm -rf build *.egg-info
USER gradaudit
CMD ["gradaudit", "worker"]
