"""The labelling database: tables, engine and transactions (SQLAlchemy; SQLite or PostgreSQL).

Durability rules the rest of the app relies on:
- every write happens inside one transaction (`transaction()`), so a crash leaves either all of
  a judgement or none of it;
- SQLite runs in WAL mode with synchronous=FULL and starts every transaction with BEGIN IMMEDIATE,
  so concurrent annotators are serialised by the database, not by luck;
- uniqueness is enforced by constraints (one judgement per assignment, one assignment per
  annotator and pair, one pair per content hash), so a double submit cannot double count.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine,
                        event)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from citeagent.answer import Answer

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # stored naive, always UTC


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class Pair(Base):
    """Two answers to one question, waiting for judgements. `answer_a`/`answer_b` are Answer JSON."""

    __tablename__ = "pairs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question: Mapped[str] = mapped_column(Text, nullable=False)
    answer_a: Mapped[str] = mapped_column(Text, nullable=False)
    answer_b: Mapped[str] = mapped_column(Text, nullable=False)
    content_key: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    source: Mapped[str] = mapped_column(String(200), default="", nullable=False)  # file:line it came from
    priority: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)  # higher is labelled first
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)

    def answers(self) -> tuple[Answer, Answer]:
        return Answer.from_dict(json.loads(self.answer_a)), Answer.from_dict(json.loads(self.answer_b))


class Assignment(Base):
    """A pair handed to one annotator. `nonce` is the form's one-time id: a resubmission carrying
    the same nonce is recognised as the same judgement."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("pair_id", "user_id", name="one_assignment_per_annotator"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), nullable=False, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", nullable=False)  # open | done | skipped
    swapped: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)  # B shown on the left
    nonce: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Judgement(Base):
    """One annotator's judgement of one pair, with exactly what they were shown.

    `score_a` is WebGPT's score_0 for answer A in [-1, 1] (1: A strongly better, 0: tie). Per-answer
    fields follow GopherCite (supported by its quotes, plausible answer) and Sparrow (rule break)."""

    __tablename__ = "judgements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), unique=True, nullable=False)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"), nullable=False, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    annotator: Mapped[str] = mapped_column(String(64), nullable=False)  # username at the time
    score_a: Mapped[float] = mapped_column(Float, nullable=False)
    a_supported: Mapped[bool] = mapped_column(Boolean, nullable=False)
    a_plausible: Mapped[bool] = mapped_column(Boolean, nullable=False)
    a_harmful: Mapped[bool] = mapped_column(Boolean, nullable=False)
    b_supported: Mapped[bool] = mapped_column(Boolean, nullable=False)
    b_plausible: Mapped[bool] = mapped_column(Boolean, nullable=False)
    b_harmful: Mapped[bool] = mapped_column(Boolean, nullable=False)
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)
    shown_question: Mapped[str] = mapped_column(Text, nullable=False)
    shown_left: Mapped[str] = mapped_column(Text, nullable=False)  # Answer JSON exactly as displayed
    shown_right: Mapped[str] = mapped_column(Text, nullable=False)
    shown_swapped: Mapped[bool] = mapped_column(Boolean, nullable=False)
    app_version: Mapped[str] = mapped_column(String(64), nullable=False)
    shown_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class RuleLabel(Base):
    """One rule an annotator said an answer breaks (Sparrow's per-rule labels), stored in the same
    transaction as its judgement. `side` is "a" or "b", the pair's answer, not the display side."""

    __tablename__ = "rule_labels"
    __table_args__ = (UniqueConstraint("judgement_id", "side", "rule_id", name="one_label_per_rule"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    judgement_id: Mapped[int] = mapped_column(ForeignKey("judgements.id"), nullable=False, index=True)
    side: Mapped[str] = mapped_column(String(1), nullable=False)
    rule_id: Mapped[str] = mapped_column(String(64), nullable=False)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


# --- engine ------------------------------------------------------------------------------------------


def default_db_url() -> str:
    """$CITEAGENT_LABEL_DB, else a SQLite file under the cache home."""
    env = os.environ.get("CITEAGENT_LABEL_DB")
    if env:
        return env
    from citeenv.paths import citeagent_home

    path = citeagent_home() / "label" / "labels.db"
    return f"sqlite:///{path}"


def make_engine(url: str | None = None) -> Engine:
    """An engine with the durability settings above; creates the tables (and the SQLite file)."""
    url = url or default_db_url()
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if not u.database or u.database == ":memory:":
            raise ValueError("The labelling database must be a file (sqlite:///path/labels.db) or a server URL; "
                             "an in-memory database would lose every judgement when the server stops.")
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_setup(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    Base.metadata.create_all(engine)
    with transaction(engine) as s:
        if s.get(Setting, "schema_version") is None:
            s.add(Setting(key="schema_version", value=str(SCHEMA_VERSION)))
    return engine


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        # Take transaction control away from the sqlite3 module so BEGIN IMMEDIATE below is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a committed judgement survives power loss too
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # IMMEDIATE takes the write lock at the start: two annotators asking for the next pair at
        # once are served one after the other instead of both reading "pair 7 is free".
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def transaction(engine: Engine):
    """A session whose work commits at the end of the block, or rolls back entirely on any error."""
    session = Session(engine, expire_on_commit=False)
    try:
        with session.begin():
            yield session
    finally:
        session.close()


def get_setting(engine: Engine, key: str, default_factory=None) -> str | None:
    """A stored setting; when missing and a factory is given, store the factory's value once
    (two servers starting together on PostgreSQL both try; the loser reads the winner's)."""
    try:
        with transaction(engine) as s:
            row = s.get(Setting, key)
            if row is None and default_factory is not None:
                row = Setting(key=key, value=default_factory())
                s.add(row)
            return row.value if row else None
    except IntegrityError:
        with transaction(engine) as s:
            return s.get(Setting, key).value
