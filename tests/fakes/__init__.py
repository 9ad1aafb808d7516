"""Fake APNs, FCM and Web Push servers on loopback, speaking the real protocols.

Each is an async context manager with `url`/`origin`, `ca_pem_path`, what it
`received`, and a way to script outcomes (`fail(...)` and friends).
`tests.fakes.process.fake_in_subprocess` runs one in another process, for
benchmarks that must not count the fake's CPU.
"""

from tests.fakes.apns import FakeAPNs
from tests.fakes.fcm import FakeFCM
from tests.fakes.webpush import FakeWebPush

__all__ = ["FakeAPNs", "FakeFCM", "FakeWebPush"]
