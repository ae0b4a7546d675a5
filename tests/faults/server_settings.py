"""The served settings (config.settings, read from the environment as under `make run`), with static files
served from the source tree (whitenoise finders): `make run` runs collectstatic first, which these tests skip."""

from config.settings import *  # noqa: F403

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
