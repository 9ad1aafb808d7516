"""RabbitMQ for tests: each suite its own vhost, so no test touches another's queues."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator

AMQP_BASE = os.environ.get("CLARION_TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@contextlib.contextmanager
def own_vhost(prefix: str = "clarion_test") -> Iterator[str]:
    """A fresh vhost that guest may use, deleted afterwards; its amqp:// URL."""
    vhost = f"{prefix}_{secrets.token_hex(4)}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"{AMQP_BASE}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)
