# One image for web, worker and beat; the `chain` stage also serves as the local anvil node and
# the `proxy` stage is nginx in front of web (marketplace/nginx.conf).
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
# A fixed uid: nginx (the proxy stage) runs as the same user, to read the owner-only dataset files.
RUN groupadd --system --gid 10001 marketplace \
    && useradd --system --uid 10001 --gid 10001 --home /app marketplace \
    && mkdir -p /app/.data/search /data/files /data/uploads \
    && chown -R marketplace /app/.data /data
USER marketplace
EXPOSE 8000
CMD ["gunicorn", "-c", "marketplace/gunicorn_conf.py", "marketplace.wsgi", "--bind", "0.0.0.0:8000"]

# nginx in front of web: buffers uploads, sends bought files (X-Accel-Redirect) and static files.
# It runs as the app's user (uid 10001), never root, and so listens on 8080.
FROM nginx:1.27-bookworm AS proxy
RUN groupadd --system --gid 10001 marketplace \
    && useradd --system --uid 10001 --gid 10001 --no-create-home marketplace \
    && mkdir -p /var/lib/nginx/body /data/files \
    && chown -R marketplace:marketplace /var/lib/nginx /data
COPY marketplace/nginx.conf /etc/nginx/nginx.conf
COPY --from=app /app/staticfiles/ /srv/static/
USER marketplace
EXPOSE 8080
CMD ["nginx", "-g", "daemon off;"]
