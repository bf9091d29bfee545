"""Secrets, hosts, HTTPS and the callback/API credentials. Production refuses to start
without real secrets; development gets throw-away ones."""

from __future__ import annotations

from .base import DEBUG, PRODUCTION
from .env import ConfigError, env, typed

SECRET_KEY = env.str("SECRET_KEY", default="")
CALLBACK_SECRET = env.str("CALLBACK_SECRET", default="")
if PRODUCTION:
    if len(SECRET_KEY) < 50:
        raise ConfigError("SECRET_KEY: required in production (at least 50 random characters)")
    if not CALLBACK_SECRET:
        raise ConfigError("CALLBACK_SECRET: required in production (the HMAC key of callbacks)")
elif not SECRET_KEY:
    SECRET_KEY = "development-only-not-secret-" + "x" * 40

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ConfigError("ALLOWED_HOSTS: required in production (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

CALLBACK_URL = env.str("CALLBACK_URL", default="")
CALLBACK_TIMEOUT_SECONDS = typed("CALLBACK_TIMEOUT_SECONDS", int, 10)
CALLBACK_MAX_BODY_BYTES = typed("CALLBACK_MAX_BODY_BYTES", int, 2 * 1024 * 1024)
CALLBACK_MAX_ATTEMPTS = typed("CALLBACK_MAX_ATTEMPTS", int, 4)
CALLBACK_RETRY_INTERVAL_SECONDS = typed("CALLBACK_RETRY_INTERVAL_SECONDS", float, 5.0)
# After CALLBACK_MAX_ATTEMPTS a result stays in the outbox and is sent again with the same
# backoff until CALLBACK_OUTBOX_TTL_SECONDS after it was produced; then it is "expired" (an
# operator can still replay it). The cap keeps a backend that comes back waiting at most
# this long (plus the drain interval) for its results.
CALLBACK_RETRY_MAX_INTERVAL_SECONDS = typed("CALLBACK_RETRY_MAX_INTERVAL_SECONDS", float, 240.0)
CALLBACK_OUTBOX_TTL_SECONDS = typed("CALLBACK_OUTBOX_TTL_SECONDS", int, 24 * 3600)
# Bearer tokens accepted by the start endpoints (comma-separated).
API_TOKENS = [t for t in env.list("API_TOKENS", default=[]) if t]
# Token for /metrics (staff sessions are accepted too).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = typed("SECURE_HSTS_SECONDS", int, 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if DEBUG:
        raise ConfigError("DEBUG: must be false in production")
