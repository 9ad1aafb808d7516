"""Names and limits of the delivery pipeline, in one place."""

from __future__ import annotations

PLATFORMS = ("ios", "android", "web")

# Delivery statuses (API.md). `queued` is the only non-final one.
QUEUED, SENT, DELIVERED, OPENED = "queued", "sent", "delivered", "opened"
FAILED, DEAD, SKIPPED, CANCELED = "failed", "dead", "skipped", "canceled"
DELIVERY_STATUSES = (QUEUED, SENT, DELIVERED, OPENED, FAILED, DEAD, SKIPPED, CANCELED)

# Notification statuses: accepted -> scheduled? -> dispatching -> completed | canceled
ACCEPTED, SCHEDULED, DISPATCHING, COMPLETED = "accepted", "scheduled", "dispatching", "completed"
NOTIFICATION_CANCELED = "canceled"

# Skip / failure reasons that are ours rather than a provider's.
NO_ACTIVE_DEVICE = "no_active_device"
OPTED_OUT = "opted_out"
EXPIRED = "expired"
FREQUENCY_CAPPED = "frequency_capped"
QUIET_HOURS_EXPIRED = "quiet_hours_expired"
DEVICE_INACTIVE = "device_inactive"
DEVICE_DELETED = "device_deleted"
NO_CREDENTIALS = "no_credentials"
CANCELED_REASON = "canceled"

# Fan-out: users per batch (one transaction each) and deliveries per queue job.
# APNs multiplexes up to 1,000 streams per connection, so its jobs are larger:
# more in flight per job hides more round trips (an iOS broadcast ran ×1.3
# faster with 500 than with 100). The HTTP/1.1 providers have one request per
# connection in flight, so bigger jobs would only queue inside the client.
FANOUT_USER_BATCH = 500
DELIVERIES_PER_JOB = {"ios": 500, "android": 100, "web": 100}
FANOUT_LEASE_SECONDS = 30.0

# Embedded broker: a job's lease is renewed while it is worked on, so a
# SIGKILLed holder's jobs come back within one lease.
EMBEDDED_LEASE_SECONDS = 20.0
EMBEDDED_POLL_SECONDS = 0.05
# A job handed out this many times (each crash or failure mid-job costs one)
# is a poison job: its deliveries go `dead` instead of killing workers forever.
# The same limit as RabbitMQ's x-delivery-limit.
EMBEDDED_CLAIM_LIMIT = 20

# Concurrency: batches in flight per platform, and per app on one platform
# (one provider connection set), so a slow provider stalls only itself.
PLATFORM_CONCURRENCY = 8
PROVIDER_CONCURRENCY = 4

# RabbitMQ names; a prefix lets several deployments (or tests) share a vhost.
EXCHANGE = "clarion"
DEAD_LETTER_EXCHANGE = "clarion.dlx"
DEAD_LETTER_QUEUE = "clarion.dead"
WORK_QUEUE = "clarion.work.{platform}"
DELAY_QUEUE = "clarion.delay.{seconds}"
# Delay levels (seconds): a message waits in the longest level not beyond its
# due time, then hops again until due, so any delay needs few hops.
DELAY_LEVELS = tuple(2**k for k in range(0, 17))  # 1 s .. ~18 h
RABBITMQ_PREFETCH = 32

# Deliveries whose due time is this close count as due now.
DUE_SLACK_SECONDS = 0.05
