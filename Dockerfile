# One image for web, worker and beat; the `chain` stage also serves as the local anvil node.
# Build: docker compose build   (see docker-compose.yml)

FROM node:20-bookworm-slim AS chain
WORKDIR /app/contracts
COPY contracts/package.json contracts/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY contracts/ ./
RUN node_modules/.bin/forge build --use ./solc-wrapper

FROM node:20-bookworm-slim AS frontend
WORKDIR /app/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM python:3.11-slim-bookworm AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app
WORKDIR /app
COPY pyproject.toml README.md ./
COPY marketplace/ marketplace/
RUN pip install --no-cache-dir .
COPY manage.py Procfile ./
COPY frontend/jinja2/ frontend/jinja2/
COPY --from=frontend /app/frontend/dist/ frontend/dist/
COPY --from=chain /app/contracts/out/ contracts/out/
# collectstatic needs settings, not a database: placeholders only for this step.
RUN DJANGO_SECRET_KEY=build-only DATABASE_URL=postgresql://build/placeholder \
    python manage.py collectstatic --noinput
RUN useradd --system --home /app marketplace \
    && mkdir -p /app/.data/search /data/files /data/uploads \
    && chown -R marketplace /app/.data /data
USER marketplace
EXPOSE 8000
CMD ["gunicorn", "-c", "marketplace/gunicorn_conf.py", "marketplace.wsgi", "--bind", "0.0.0.0:8000"]
