"""ASGI entry point."""

from django.core.asgi import get_asgi_application

from toqportal.entrypoints import load_settings

load_settings()
application = get_asgi_application()
