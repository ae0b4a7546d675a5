"""Test settings: fixed throwaway keys, fast hashing, plain static storage, 127.0.0.1 allowed for fakes."""

import os

os.environ.update(
    {
        "SECRET_KEY": "test-secret-key-that-is-long-enough-for-django-checks",
        "FIELD_ENCRYPTION_KEY": "Ju6CElcGyMt7kuiADmOZZnQFNSAKFe27lQ9O8mKb5F4=",
        "ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
        "DATABASE_URL": os.environ.get("TEST_DATABASE_URL", "sqlite:///:memory:"),
        "DEBUG": "false",
        "HTTPS": "false",
    }
)

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# The test client's `client.login()` authenticates without a request, which axes refuses; the real login
# views (site and admin) still go through axes unchanged.
AUTHENTICATION_BACKENDS = [
    "tests.login_support.AxesBackendAllowingTestClientLogin",
    "django.contrib.auth.backends.ModelBackend",
]
# Tests write recorded calls where they can see them: `usage.recorder.RECORDER.flush()` on their own thread.
USAGE_WRITER_THREAD = False
# Tests write the tokens calls spent from budgets where they can see them: `PENDING_TOKENS.flush()`.
LIMITS_WRITER_THREAD = False
