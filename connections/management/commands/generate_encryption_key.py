from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Print a fresh Fernet key for FIELD_ENCRYPTION_KEY (and nothing else, so scripts can capture it). "
        "See docs/encryption-and-rotation.md before putting it in front of the current key."
    )
    requires_system_checks: list[str] = []

    def handle(self, *args, **options) -> None:
        self.stdout.write(Fernet.generate_key().decode("ascii"))
