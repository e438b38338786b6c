"""Django settings for MMIS. Everything has a working default; see DESIGN.md "Configuration"."""

import os
import time
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent
env = environ.Env()
PROJECT_DIR = Path(env.str("MMIS_HOME", default=str(BASE_DIR.parent.parent)))
VAR_DIR = Path(env.str("MMIS_VAR_DIR", default=str(PROJECT_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("MMIS_DEBUG", default=False)


def _installation_secret(name: str) -> str:
    """A random secret made once per installation and kept in VAR_DIR/secrets/<name> (mode 600):
    never a value from the public source, yet no setup step. Concurrent first starts (test
    workers) agree: the file is created exclusively, the losers read it."""
    import secrets as _secrets

    folder = VAR_DIR / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            value = path.read_text().strip()
            if value:
                return value
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty") from None
    value = _secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


SECRET_KEY = env.str("MMIS_SECRET_KEY", default="") or _installation_secret("django_secret_key")
# Key of the HMAC-signed payment callbacks (online payment, agency collection): a channel is given
# this value; set MMIS_CALLBACK_SECRET to share a fixed one.
MMIS_CALLBACK_SECRET = env.str("MMIS_CALLBACK_SECRET", default="") or _installation_secret("callback_secret")
# Key for field encryption at rest (ID numbers, phones, bank accounts); any string, hashed to 256 bits.
FIELD_KEY = env.str("MMIS_FIELD_KEY", default="mmis-demo-field-key-change-me")
ALLOWED_HOSTS = env.list("MMIS_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "treebeard",
    "simple_history",
    "axes",
    "ninja",
    "mmis.org",
    "mmis.workflow",
    "mmis.customers",
    "mmis.assets",
    "mmis.readings",
    "mmis.tariffs",
    "mmis.accounts",
    "mmis.billing",
    "mmis.services",
    "mmis.service_desk",
    "mmis.inspection",
    "mmis.losses",
    "mmis.control",
    "mmis.analytics",
    "mmis.portal",
    "mmis.web",
    "mmis.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "mmis.web.middleware.ChineseFirstLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "mmis.urls"
WSGI_APPLICATION = "mmis.wsgi.application"
ASGI_APPLICATION = "mmis.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "mmis.web.context.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("MMIS_DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'mmis.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
            "transaction_mode": "IMMEDIATE",
        }
    )
    # Tests use an in-memory database per process (parallel runs never share a file).
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "org.User"
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "web:login"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Lockout after repeated failures (django-axes): 5 failures per user name lock it for 15 minutes.
AXES_FAILURE_LIMIT = env.int("MMIS_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("MMIS_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "web/locked_out.html"
AXES_VERBOSE = False

# Session and cookie security.
HTTPS = env.bool("MMIS_HTTPS", default=False)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 8 * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = 31536000

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "/media/"
DATA_UPLOAD_MAX_MEMORY_SIZE = 50 * 1024 * 1024

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True

# Jobs: with no broker every task runs in-process (eager); with MMIS_BROKER_URL on Celery workers.
BROKER_URL = env.str("MMIS_BROKER_URL", default="")
CELERY_BROKER_URL = BROKER_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True

MQTT_URL = env.str("MMIS_MQTT_URL", default="mqtt://127.0.0.1:1883")

# Notices (SMS / e-bill) outbox sender: "file" writes to var/outbox, "console" prints.
NOTICE_SENDER = env.str("MMIS_NOTICE_SENDER", default="file")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("MMIS_LOG_LEVEL", default="WARNING")},
    "loggers": {"axes": {"level": "ERROR"}},
}
# Service halls sit behind one NAT address: lock the user name, not the shared IP.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]

# Periodic jobs (Celery beat: `celery -A mmis beat`); each is also safe to run by hand.
CELERY_BEAT_SCHEDULE = {
    "workflow-deadlines": {"task": "workflow.check_deadlines", "schedule": 300.0},
    "notices-retry": {"task": "accounts.dispatch_notices", "schedule": 600.0},
    "readings-daily": {"task": "readings.daily", "schedule": 24 * 3600.0},
    "collection-daily": {"task": "accounts.daily_collection", "schedule": 24 * 3600.0},
}
CELERY_TIMEZONE = TIME_ZONE
