"""Core Django settings: apps, middleware, templates, logging."""

from __future__ import annotations

import zoneinfo

from .env import BASE_DIR, ConfigError, env, typed

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "production", "test"}:
    raise ConfigError(f"DJANGO_ENV: must be development, production or test, got {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"
DEBUG = typed("DEBUG", bool, not PRODUCTION)

INSTALLED_APPS = [
    "media_jobs.apps.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "media_jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language of each request: the session's choice (the admin header's switcher), else
    # the browser's Accept-Language, else LANGUAGE_CODE.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "toqportal.urls"
WSGI_APPLICATION = "toqportal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if DJANGO_ENV == "test":
    # PBKDF2's million rounds cost ~0.3 s a user, and the admin tests make hundreds of users;
    # the hash is not what they test. Every other profile keeps Django's default hashers.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# English and Brazilian Portuguese (the catalogue is locale/pt_BR; `make setup` compiles it).
# LANGUAGE_CODE: what a browser without a known Accept-Language and the management commands get.
LANGUAGES = [("en", "English"), ("pt-br", "Português (Brasil)")]
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="en").lower()
if LANGUAGE_CODE not in dict(LANGUAGES):
    raise ConfigError(f"LANGUAGE_CODE: must be en or pt-br, got {LANGUAGE_CODE!r}")
LOCALE_PATHS = [BASE_DIR / "locale"]
# Data is stored in UTC (USE_TZ, the MySQL session in +00:00); the portal shows every time in
# this zone, one format with seconds and the zone (toqportal/formats).
TIME_ZONE = env.str("TIME_ZONE", default="America/Sao_Paulo")
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ConfigError(
        f"TIME_ZONE: unknown time zone {TIME_ZONE!r}; use an IANA name such as "
        "America/Sao_Paulo or UTC"
    ) from None
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["toqportal.formats"]  # en and pt_BR: one timestamp format each

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "media_jobs.pipeline.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

# The admin user that `make run` creates (manage.py ensure_admin).
ENV_ADMIN = {
    "username": env.str("ADMIN_USERNAME", default="admin"),
    "password": env.str("ADMIN_PASSWORD", default=""),
    "email": env.str("ADMIN_EMAIL", default="admin@example.com"),
}
