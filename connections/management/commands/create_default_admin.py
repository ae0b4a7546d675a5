import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the 'admin' superuser when no user exists (password from DJANGO_SUPERUSER_PASSWORD, else "
        "generated and printed once). Never changes an existing user."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.exists():
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(16)
        User.objects.create_superuser("admin", email="", password=password)
        if "DJANGO_SUPERUSER_PASSWORD" in os.environ and os.environ["DJANGO_SUPERUSER_PASSWORD"]:
            self.stdout.write("Superuser admin created with the password from DJANGO_SUPERUSER_PASSWORD.")
        else:
            self.stdout.write(f"Superuser admin created with password: {password}")
