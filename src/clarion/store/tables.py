"""The schema, in SQLAlchemy Core: one definition for SQLite and PostgreSQL.

Integer `pk` columns exist for keyset pagination and joins; the public ids
are opaque strings. Secrets are stored encrypted (`*_enc`, AES-GCM) or hashed
(`*_hash`), never in the clear.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = sa.JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _pk() -> sa.Column[int]:
    return sa.Column("pk", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)


apps = sa.Table(
    "apps",
    metadata,
    _pk(),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("default_ttl", sa.Integer, nullable=False, server_default="86400"),
    sa.Column("frequency_caps", Json, nullable=False, default=dict),
    sa.Column("vapid_public_key", sa.String(100), nullable=False),
    sa.Column("vapid_private_key_enc", sa.LargeBinary, nullable=False),
    sa.Column("webpush_subject", sa.String(300)),
    sa.Column("apns_credentials_enc", sa.LargeBinary),
    sa.Column("fcm_credentials_enc", sa.LargeBinary),
    # provider -> reason, set when a provider rejects the credentials themselves
    sa.Column("credential_problems", Json, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _pk(),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("app_pk", sa.ForeignKey("apps.pk", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # secret | publishable
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
)

users = sa.Table(
    "users",
    metadata,
    _pk(),
    sa.Column("app_pk", sa.ForeignKey("apps.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("attributes", Json, nullable=False, default=dict),
    sa.Column("timezone", sa.String(64)),
    sa.Column("locale", sa.String(35)),
    sa.Column("lat", sa.Float),
    sa.Column("lon", sa.Float),
    sa.Column("email", sa.String(320)),
    sa.Column("phone", sa.String(32)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("app_pk", "user_id", name="uq_users_app_user"),
)

devices = sa.Table(
    "devices",
    metadata,
    _pk(),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("app_pk", sa.ForeignKey("apps.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("user_pk", sa.ForeignKey("users.pk", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("platform", sa.String(16), nullable=False),
    # keyed hash (HMAC-SHA256) of the token or endpoint: finds a device without decrypting
    sa.Column("token_hash", sa.String(64), nullable=False),
    # AES-GCM of the token (ios/android) or of the subscription JSON (web)
    sa.Column("token_enc", sa.LargeBinary, nullable=False),
    sa.Column("locale", sa.String(35)),
    sa.Column("timezone", sa.String(64)),
    sa.Column("app_version", sa.String(64)),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("deactivated_reason", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("app_pk", "token_hash", name="uq_devices_app_token"),
    sa.Index("ix_devices_app_active", "app_pk", "active", "pk"),
)

preferences = sa.Table(
    "preferences",
    metadata,
    sa.Column("user_pk", sa.ForeignKey("users.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("opt_out_all", sa.Boolean, nullable=False, default=False),
    sa.Column("types", Json, nullable=False, default=dict),
    sa.Column("categories", Json, nullable=False, default=dict),
    sa.Column("quiet_start", sa.String(5)),
    sa.Column("quiet_end", sa.String(5)),
)

topic_subscriptions = sa.Table(
    "topic_subscriptions",
    metadata,
    sa.Column("app_pk", sa.ForeignKey("apps.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("topic", sa.String(200), nullable=False),
    sa.Column("user_pk", sa.ForeignKey("users.pk", ondelete="CASCADE"), nullable=False),
    sa.PrimaryKeyConstraint("app_pk", "topic", "user_pk", name="pk_topic_subscriptions"),
    sa.Index("ix_topic_subscriptions_user", "user_pk"),
)

segments = sa.Table(
    "segments",
    metadata,
    sa.Column("app_pk", sa.ForeignKey("apps.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("filter", Json, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("app_pk", "name", name="pk_segments"),
)

notifications = sa.Table(
    "notifications",
    metadata,
    _pk(),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("app_pk", sa.ForeignKey("apps.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("category", sa.String(200)),
    sa.Column("request", Json, nullable=False),  # the validated request body
    # accepted | scheduled | dispatching | completed | canceled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("send_at", UTCDateTime),
    # fan-out progress, so a restart resumes where it stopped
    sa.Column("fanout_cursor", Json),
    sa.Column("fanout_done", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime),
    sa.Index("ix_notifications_app_pk", "app_pk", "pk"),
    sa.Index("ix_notifications_status", "status"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    _pk(),
    sa.Column("id", sa.String(36), nullable=False, unique=True),  # a UUID
    sa.Column("notification_pk", sa.ForeignKey("notifications.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("app_pk", sa.ForeignKey("apps.pk", ondelete="CASCADE"), nullable=False),
    # nulled by GDPR erasure; the record stays for counts and stats
    sa.Column("user_pk", sa.ForeignKey("users.pk", ondelete="SET NULL")),
    sa.Column("user_id", sa.String(128)),
    sa.Column("device_pk", sa.ForeignKey("devices.pk", ondelete="SET NULL")),
    sa.Column("device_id", sa.String(40)),
    sa.Column("platform", sa.String(16)),
    # queued | sent | delivered | opened | failed | dead | skipped | canceled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("rendered", Json),  # per-user content, erased with the user
    sa.Column("not_before", UTCDateTime),  # quiet hours, local_time, retry backoff
    sa.Column("queued_at", UTCDateTime),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("delivered_at", UTCDateTime),
    sa.Column("opened_at", UTCDateTime),
    sa.Column("dismissed_at", UTCDateTime),
    sa.Index("ix_deliveries_notification_status", "notification_pk", "status"),
    sa.Index("ix_deliveries_app_status", "app_pk", "status", "pk"),
    sa.Index("ix_deliveries_user", "user_pk"),
    sa.Index("ix_deliveries_device", "device_pk"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("app_pk", sa.ForeignKey("apps.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("route", sa.String(100), nullable=False),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer),  # null while the first request runs
    sa.Column("response", Json),
    sa.Column("locked_until", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("app_pk", "route", "key", name="pk_idempotency_keys"),
)

# The embedded broker's durable jobs (SQLite shape; unused with RabbitMQ).
queue_jobs = sa.Table(
    "queue_jobs",
    metadata,
    _pk(),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("available_at", sa.Float, nullable=False),  # unix time
    sa.Column("lease_until", sa.Float),  # unix time; a dead holder's lease runs out
    sa.Column("claims", sa.Integer, nullable=False, server_default="0"),  # times handed out; see EMBEDDED_CLAIM_LIMIT
    sa.Index("ix_queue_jobs_ready", "queue", "available_at"),
)
