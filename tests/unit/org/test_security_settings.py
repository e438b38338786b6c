import importlib


def test_production_settings_hash_with_argon2_and_lock_out():
    prod = importlib.import_module("mmis.settings")
    assert prod.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    assert prod.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert prod.AXES_FAILURE_LIMIT == 5
    assert prod.SESSION_COOKIE_HTTPONLY and prod.SESSION_EXPIRE_AT_BROWSER_CLOSE
    assert "django.middleware.csrf.CsrfViewMiddleware" in prod.MIDDLEWARE
    assert prod.X_FRAME_OPTIONS == "DENY"
