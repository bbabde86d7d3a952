"""The tables of `SQLAlchemyStore`, the schema version row and the clock expressions.

Kept apart from the store so the layout (what an operator may want to read or
migrate by hand) is in one short place.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    literal_column,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement

__all__ = ["SCHEMA_VERSION", "Tables", "now_ms"]

SCHEMA_VERSION: Final = 1
"""The version of the table layout this module reads and writes."""

# JSONB on PostgreSQL (binary, indexable, compared by value); JSON text elsewhere.
_DOCUMENT = JSON().with_variant(JSONB(), "postgresql")


class _Key(TypeDecorator[str]):
    """Text of an id or owner key.

    PostgreSQL text cannot hold NUL characters, so on PostgreSQL they are stored
    as U+FFFD: a lookup by an id with a NUL then finds nothing (or the same
    record it was saved as) instead of failing.
    """

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is not None and dialect.name == "postgresql" and "\x00" in value:
            return value.replace("\x00", "\ufffd")
        return value


# SQLite only hands out automatic keys for INTEGER PRIMARY KEY (the rowid).
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")


class Tables:
    """The store's tables, named `<prefix>threads`, `<prefix>items` and so on."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.metadata = MetaData()
        self.threads = Table(
            f"{prefix}threads",
            self.metadata,
            # Insertion order: breaks ties between threads created at the same instant.
            Column("seq", _SERIAL, primary_key=True, autoincrement=True),
            Column("owner", _Key(), nullable=False),
            Column("id", _Key(), nullable=False),
            # Microseconds since the epoch, UTC: one integer sorts the same everywhere.
            Column("created_at", BigInteger, nullable=False),
            # The thread's item counter: each append takes the next value under the
            # thread row's lock, so positions are distinct and increasing.
            Column("item_seq", BigInteger, nullable=False, server_default="0"),
            Column("data", _DOCUMENT, nullable=False),
            UniqueConstraint("owner", "id", name=f"{prefix}threads_owner_id"),
        )
        Index(
            f"{prefix}threads_by_created",
            self.threads.c.owner,
            self.threads.c.created_at,
            self.threads.c.seq,
        )
        self.items = Table(
            f"{prefix}items",
            self.metadata,
            Column(
                "thread_seq",
                _SERIAL,
                ForeignKey(self.threads.c.seq, ondelete="CASCADE"),
                primary_key=True,
                autoincrement=False,
            ),
            Column("position", BigInteger, primary_key=True, autoincrement=False),
            Column("id", _Key(), nullable=False),
            Column("data", _DOCUMENT, nullable=False),
            UniqueConstraint("thread_seq", "id", name=f"{prefix}items_thread_id"),
        )
        self.attachments = Table(
            f"{prefix}attachments",
            self.metadata,
            Column("owner", _Key(), primary_key=True),
            Column("id", _Key(), primary_key=True),
            Column("thread_id", _Key(), nullable=True),
            Column("data", _DOCUMENT, nullable=False),
        )
        Index(
            f"{prefix}attachments_by_thread",
            self.attachments.c.owner,
            self.attachments.c.thread_id,
        )
        self.turns = Table(
            f"{prefix}turns",
            self.metadata,
            Column("owner", _Key(), primary_key=True),
            Column("thread_id", _Key(), primary_key=True),
            Column("holder", _Key(), nullable=False),
            # Milliseconds since the epoch on the database's clock.
            Column("expires_at", BigInteger, nullable=False),
        )
        self.schema = Table(
            f"{prefix}schema",
            self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=False),
            Column("version", Integer, nullable=False),
        )


def now_ms(dialect: str) -> ColumnElement[Any]:
    """The database's current time in milliseconds since the epoch.

    Lease expiry is judged by the database's clock, so app machines whose clocks
    disagree still agree on who holds a turn.
    """
    if dialect == "postgresql":
        # clock_timestamp(), not now(): now() is frozen at the transaction's start.
        return literal_column("CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
    if dialect == "sqlite":
        return literal_column("CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)")
    raise NotImplementedError(f"SQLAlchemyStore does not support the {dialect!r} dialect")
