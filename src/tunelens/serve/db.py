"""Durable storage: SQLAlchemy 2 tables, SQLite in WAL mode by default, Alembic migrations at startup.

Every column that can hold client text is a redacting type (`RedactedText`, `RedactedJSON`):
the value passes `tunelens.safety.pii.redact` on its way into the database, whatever the caller
did before, so no code path can store raw PII or secrets by forgetting to redact.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import threading
import time

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from tunelens.errors import TunelensError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


ROLES = ("user", "admin")

# What a storage outage looks like from SQLAlchemy: the database cannot be reached, opened,
# written (read-only file, full disk, lock held too long) or the pool is exhausted.
STORAGE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError)


class StorageUnavailable(TunelensError):
    """The database cannot take writes now (answered 503 by the server)."""


class Redacted(str):
    """Text that `redact_text` made: already passed through `tunelens.safety.pii.redact`.

    The redacting columns store it as it is, so a text redacted once (for the model or the client)
    is not redacted a second time on its way into the database. Only `redact_text` makes one;
    anything derived from it (a slice, a join, an f-string) is a plain ``str`` again and is redacted.
    """

    __slots__ = ()


def redact_text(text: str) -> tuple[Redacted, dict[str, int]]:
    """``tunelens.safety.pii.redact(text)``, the result marked as redacted (see `Redacted`)."""
    from tunelens.data.pii import redact  # the curation step's name for tunelens.safety.pii.redact (tests patch it)

    red, counts = redact(text)
    return Redacted(red), counts


def redact_value(value: Any) -> Any:
    """Every string in ``value`` (nested lists and dicts included) with PII and secrets redacted
    (a `Redacted` text as it is: it was redacted by the same function)."""
    from tunelens.data.pii import redact  # the curation step's name for tunelens.safety.pii.redact (tests patch it)

    if isinstance(value, Redacted):
        return str(value)
    if isinstance(value, str):
        return redact(value)[0]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


class RedactedText(TypeDecorator):
    """Text that is PII/secret-redacted on every write."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else redact_value(value)


class RedactedJSON(TypeDecorator):
    """JSON whose strings are PII/secret-redacted on every write."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return redact_value(value)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public part of the key
    name: Mapped[str] = mapped_column(String(200))
    salt: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")  # user | admin
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Exchange(Base):
    __tablename__ = "exchanges"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    model: Mapped[str] = mapped_column(String(200))  # served name
    model_id: Mapped[str] = mapped_column(String(500))  # resolved id / fingerprint
    request: Mapped[Any] = mapped_column(RedactedJSON)  # PII-redacted messages + documents + params
    response: Mapped[str] = mapped_column(RedactedText)  # PII-redacted
    guardrails: Mapped[Any] = mapped_column(RedactedJSON)
    finish_reason: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exchange_id: Mapped[str] = mapped_column(ForeignKey("exchanges.id"), index=True)
    api_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)  # -1/+1 (thumbs) or 1..5
    rating_scale: Mapped[str | None] = mapped_column(String(16), nullable=True)  # "thumbs" | "1-5"
    correction: Mapped[str | None] = mapped_column(RedactedText, nullable=True)
    preferred: Mapped[str | None] = mapped_column(RedactedText, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ABJudgment(Base):
    __tablename__ = "ab_judgments"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    prompt: Mapped[str] = mapped_column(RedactedText)
    left_model: Mapped[str] = mapped_column(String(200))
    right_model: Mapped[str] = mapped_column(String(200))
    left_response: Mapped[str] = mapped_column(RedactedText)
    right_response: Mapped[str] = mapped_column(RedactedText)
    metric_left: Mapped[float | None] = mapped_column(Float, nullable=True)
    metric_right: Mapped[float | None] = mapped_column(Float, nullable=True)
    choice: Mapped[str | None] = mapped_column(String(8), nullable=True)  # left | right | tie; NULL = not judged yet
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    judged_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives the process (and OS) dying right after it returns.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for any SQLAlchemy URL; SQLite gets WAL, foreign keys and a busy timeout."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise TunelensError(f"invalid database URL {url!r}: {exc}") from None
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" and not url.startswith("sqlite:///file:"):
        Path(url.removeprefix("sqlite:///")).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (shipped inside the package)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except Exception as exc:
        raise TunelensError(f"could not migrate database {engine.url!r}: {exc}") from exc


class Store:
    """Engine + session factory, migrated on open."""

    PROBE_TTL_S = 1.0  # a successful write probe is trusted this long; a failed one never

    def __init__(self, url: str, run_migrations: bool = True):
        self.url = url
        self.engine = make_engine(url)
        if run_migrations:
            migrate(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)
        self._probe_lock = threading.Lock()
        self._last_ok = float("-inf")
        self.last_error: str | None = None

    def probe_write(self) -> str | None:
        """None if the database takes a write now, else why not. The probe writes one row in a
        transaction that is rolled back, so it changes nothing."""
        try:
            with self.engine.connect() as conn:
                tx = conn.begin()
                try:
                    conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
                finally:
                    tx.rollback()
        except SQLAlchemyError as exc:
            self.mark_failed(exc)
            return self.last_error
        with self._probe_lock:
            self._last_ok, self.last_error = time.monotonic(), None
        return None

    def mark_failed(self, exc: BaseException) -> None:
        with self._probe_lock:
            self._last_ok = float("-inf")
            self.last_error = describe_storage_error(exc)

    def require_writable(self) -> None:
        """Raise StorageUnavailable unless a write would succeed (checked at most once a second while healthy)."""
        with self._probe_lock:
            fresh = time.monotonic() - self._last_ok < self.PROBE_TTL_S
        if fresh:
            return
        error = self.probe_write()
        if error is not None:
            raise StorageUnavailable(error)

    def close(self) -> None:
        self.engine.dispose()


def describe_storage_error(exc: BaseException) -> str:
    """One line naming the database error, without the SQL statement or parameters."""
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {str(orig).splitlines()[0] if str(orig) else 'database error'}"
