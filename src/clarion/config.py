"""One typed settings object, read from the CLARION_* environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

APNS_PRODUCTION_URL = "https://api.push.apple.com"
APNS_SANDBOX_URL = "https://api.sandbox.push.apple.com"


class Settings(BaseSettings):
    """Everything Clarion can be told from outside; validated once at start-up."""

    model_config = SettingsConfigDict(env_prefix="CLARION_", extra="ignore")

    database_url: str | None = None
    queue_url: str = "embedded"
    redis_url: str | None = None
    data_dir: Path = Path("./clarion-data")
    admin_token: str | None = None
    secret_key: str | None = None
    # Comma-separated old master keys, still read (never written) while
    # `clarion rotate-key` moves every secret to CLARION_SECRET_KEY.
    previous_secret_keys: str | None = None
    apns_url: str | None = None
    fcm_url: str = "https://fcm.googleapis.com"
    ca_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    allow_local_endpoints: bool = False
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    max_attempts: int = Field(10, ge=1)
    retry_base_seconds: float = Field(2.0, gt=0)
    retry_max_seconds: float = Field(3600.0, gt=0)
    rate_limit_notifications: float = Field(100.0, ge=0)
    rate_limit_devices: float = Field(2000.0, ge=0)

    @field_validator("queue_url")
    @classmethod
    def _known_queue(cls, value: str) -> str:
        if value != "embedded" and not value.startswith(("amqp://", "amqps://")):
            raise ValueError("CLARION_QUEUE_URL must be 'embedded' or an amqp:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value and not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("CLARION_DATABASE_URL must be a sqlite:// or postgresql:// URL")
        return value

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The database URL with the async driver SQLAlchemy needs."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'clarion.db').resolve()}"
        for prefix in ("postgresql+asyncpg://", "sqlite+aiosqlite://"):
            if url.startswith(prefix):
                return url
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            return "postgresql+asyncpg://" + url[len("postgresql://"):]
        return "sqlite+aiosqlite://" + url[len("sqlite://"):]

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    def apns_base_url(self, environment: str) -> str:
        """CLARION_APNS_URL serves both environments when set."""
        if self.apns_url:
            return self.apns_url.rstrip("/")
        return APNS_SANDBOX_URL if environment == "sandbox" else APNS_PRODUCTION_URL
