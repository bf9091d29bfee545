"""WSGI entry point (gunicorn toqportal.wsgi)."""

from django.core.wsgi import get_wsgi_application

from toqportal.entrypoints import load_settings

load_settings()
application = get_wsgi_application()
