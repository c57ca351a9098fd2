# Shortcuts for scripts/dev, which works without make too.
.PHONY: run test setup check-deploy clean-data

run:
	scripts/dev run

test:
	scripts/dev test

setup:
	scripts/dev setup

# Django's deployment checklist with production-like settings (see README, "Production").
check-deploy:
	DJANGO_SECRET_KEY=$$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
	DATABASE_URL=$${DATABASE_URL:-postgresql://localhost/marketplace} \
	.venv/bin/python manage.py check --deploy --fail-level WARNING

# Forget the local database and chain (stop the marketplace first).
clean-data:
	rm -rf .data
