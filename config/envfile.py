"""Create `.env` with fresh random keys on first run (mode 0600); an existing file is never touched.

Run as `python -m config.envfile`; it imports nothing from Django so it works before settings can load.
"""

import os
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"


def env_file_text() -> str:
    return (
        "# Created by `make run`. Keep this file secret and backed up: without FIELD_ENCRYPTION_KEY\n"
        "# the stored provider credentials cannot be decrypted. See docs/encryption-and-rotation.md.\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"FIELD_ENCRYPTION_KEY={Fernet.generate_key().decode()}\n"
    )


def create_env_file(path: Path = ENV_FILE) -> bool:
    """Write the file atomically with mode 0600; return False when it already exists."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as handle:
        handle.write(env_file_text())
    return True


if __name__ == "__main__":
    if create_env_file():
        print(f"Created {ENV_FILE.name} with a fresh SECRET_KEY and FIELD_ENCRYPTION_KEY (mode 0600).")
    sys.exit(0)
