"""Where the master keys come from: CLARION_SECRET_KEY (and
CLARION_PREVIOUS_SECRET_KEYS), else files in the data dir that Clarion
creates on first start and `clarion rotate-key` replaces."""

from __future__ import annotations

import os
import time
from pathlib import Path

from clarion.config import Settings
from clarion.security import SecretBox, decode_master_key, encode_master_key, new_master_key

SECRET_KEY_FILE = "secret-key"
PREVIOUS_KEYS_FILE = "secret-key.previous"
# How often a running process looks for a key that rotate-key wrote.
REFRESH_SECONDS = 2.0


class Keyring:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.from_files = settings.secret_key is None
        self._checked = 0.0

    @property
    def key_file(self) -> Path:
        return self.settings.data_dir / SECRET_KEY_FILE

    @property
    def previous_file(self) -> Path:
        return self.settings.data_dir / PREVIOUS_KEYS_FILE

    def load(self) -> tuple[bytes, list[bytes]]:
        """(primary key, previous keys), creating the primary on first start."""
        if not self.from_files:
            assert self.settings.secret_key is not None
            previous = (self.settings.previous_secret_keys or "").split(",")
            return decode_master_key(self.settings.secret_key), [decode_master_key(k) for k in previous if k.strip()]
        if not self.key_file.exists():
            write_private(self.key_file, encode_master_key(new_master_key()), exclusive=True)
        previous = self.previous_file.read_text().split() if self.previous_file.exists() else []
        return decode_master_key(self.key_file.read_text()), [decode_master_key(k) for k in previous]

    def box(self) -> SecretBox:
        primary, previous = self.load()
        return SecretBox(primary, previous, refresh=self.load)

    def install_new_primary(self, new_key: bytes) -> None:
        """rotate-key, keys in files: the old primary joins the previous keys
        first, so no process is ever without a key it needs."""
        primary, previous = self.load()
        lines = [encode_master_key(k) for k in (primary, *previous)]
        write_private(self.previous_file, "\n".join(lines))
        write_private(self.key_file, encode_master_key(new_key))

    def drop_previous(self) -> None:
        self.previous_file.unlink(missing_ok=True)


def write_private(path: Path, text: str, exclusive: bool = False) -> None:
    """Write a secret file with mode 0600, atomically (a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
        return
    temporary = path.with_name(f".{path.name}.{time.time_ns()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    os.replace(temporary, path)
