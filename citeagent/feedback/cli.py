"""`citeagent label ...`: run the labelling app, manage annotators, fill the queue, export.
Each action's flags are its config dataclass's fields (citeagent/config_flags.py) plus --db."""
from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
from dataclasses import dataclass, field

from citeenv.web.cli import Port

from citeagent.config_flags import config_from_args, parser_class
from citeagent.feedback.app import LabelAppConfig
from citeagent.feedback.auth import LoginLimits

@dataclass
class LabelDb:
    """The flag every `citeagent label` action takes."""

    db: str = field(default="", metadata={"help": (
        "SQLAlchemy database URL (default: $CITEAGENT_LABEL_DB, else sqlite under $CITEAGENT_HOME/label/labels.db; "
        "e.g. postgresql+psycopg://user@host/labels for a team)")})


_APP = LabelAppConfig()  # the app's own defaults, which `label serve`'s flags start from


@dataclass
class LabelServeConfig:
    host: str = field(default=_APP.host, metadata={"help": (
        "address to listen on (put a TLS proxy in front for anything but localhost)")})
    port: Port = field(default=Port(_APP.port), metadata={"help": "port to listen on (0 = any free port)"})
    labels_per_pair: int = field(default=_APP.labels_per_pair, metadata={"help": (
        "judgements wanted per pair, from different annotators")})
    assignment_ttl_minutes: int = field(default=_APP.assignment_ttl_minutes, metadata={"help": (
        "an unjudged pair returns to the queue after this")})
    shuffle_sides: bool = field(default=_APP.shuffle_sides, metadata={"help": (
        "show answer A on a random side per assignment (--no-shuffle-sides: always on the left)")})
    secure_cookies: bool = field(default=_APP.secure_cookies, metadata={"action": "store_true", "help": (
        "mark the session cookie Secure (when served over HTTPS)")})
    login_max_failures: int = field(default=_APP.login.max_failures, metadata={"help": (
        f"wrong passwords for one username before its logins are refused for a while (one client address may fail "
        f"{_APP.login.per_address_factor}x as often)")})
    login_lockout_seconds: float = field(default=_APP.login.lockout_seconds, metadata={"help": (
        "how long logins stay refused after too many failures")})
    rules: str = field(default=_APP.rules, metadata={"metavar": "FILE", "help": (
        "the rule file annotators mark broken rules from (default: citeagent/safety/rules.toml)")})

    def __post_init__(self):
        self.port = Port(self.port)  # the other values are checked by LabelAppConfig, which app_config makes

    def app_config(self, db: str, **extra) -> LabelAppConfig:
        return LabelAppConfig(db=db, host=self.host, port=self.port, labels_per_pair=self.labels_per_pair,
                              assignment_ttl_minutes=self.assignment_ttl_minutes, shuffle_sides=self.shuffle_sides,
                              secure_cookies=self.secure_cookies, rules=self.rules,
                              login=LoginLimits(max_failures=self.login_max_failures,
                                                lockout_seconds=self.login_lockout_seconds), **extra)


@dataclass
class AddUserConfig:
    admin: bool = field(default=False, metadata={"action": "store_true", "help": (
        "may create annotators and export in the web app")})
    password_stdin: bool = field(default=False, metadata={"action": "store_true", "help": (
        "read the password from stdin (for scripts)")})


@dataclass
class SetPasswordConfig:
    password_stdin: bool = field(default=False, metadata={"action": "store_true", "help": (
        "read the password from stdin (for scripts)")})


@dataclass
class EnqueueConfig:
    format: str = field(default="auto", metadata={"choices": ("auto", "policy", "pairs"), "help": (
        "what the file holds: sampled answers (policy), ready pairs (pairs), or auto: tell from its rows")})
    max_pairs_per_question: int = field(default=6, metadata={"help": (
        "from policy outputs: at most this many pairs of one question's answers")})
    skip_existing: bool = field(default=False, metadata={"action": "store_true", "help": (
        "queue only the pairs not queued before")})
    reward_model: str = field(default="", metadata={"help": (
        "active selection: label first the pairs this reward model is least sure of ('default' for the default "
        "model)")})


@dataclass
class PrioritizeConfig:
    reward_model: str = field(default="default", metadata={"help": (
        "the reward model whose uncertainty orders the queue ('default': the one `citeagent train rm` saves)")})


@dataclass
class ExportConfig:
    out: str = field(metadata={"help": "a .jsonl file, or a directory for a Hugging Face datasets dataset"})
    format: str = field(default="auto", metadata={"choices": ("auto", "jsonl", "dataset"), "help": (
        "auto: JSONL when --out ends in .jsonl or .json, else a dataset directory")})


def add_label_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("label", help="human comparisons: the labelling web app, its queue and export",
                              description="Collect human comparisons of cited answers for reward models.")
    sub = p.add_subparsers(dest="label_command", metavar="ACTION", required=True, parser_class=parser_class)

    def cmd(name, func, help, config=None):
        c = sub.add_parser(name, dataclass_types=[LabelDb] + ([config] if config else []), help=help,
                           description=help)
        c.set_defaults(func=func)
        return c

    cmd("serve", cmd_serve, "start the labelling web app", LabelServeConfig)
    # A dataclass field is always a --flag; the account and the input file are positional arguments.
    cmd("add-user", cmd_add_user, "create an annotator account", AddUserConfig).add_argument("username")
    cmd("set-password", cmd_set_password, "change an annotator's password (ends their sessions)",
        SetPasswordConfig).add_argument("username")
    cmd("deactivate", cmd_deactivate, "stop an annotator from logging in (their judgements stay)").add_argument(
        "username")
    cmd("enqueue", cmd_enqueue, "queue pairs for labelling from policy outputs or a JSONL of pairs",
        EnqueueConfig).add_argument(
        "file", help="JSONL: one sampled answer per line (question, text, quotes; two or more per question), or one "
                     "pair per line (question, answer_a, answer_b), or webgpt rows")
    cmd("prioritize", cmd_prioritize, "re-order unlabelled pairs by a reward model's uncertainty", PrioritizeConfig)
    cmd("export", cmd_export, "export judgements in the openai/webgpt_comparisons schema", ExportConfig)
    cmd("stats", cmd_stats, "how far labelling has come")
    return p


def _engine(args):
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    from citeagent.feedback.db import make_engine

    db = config_from_args(args, LabelDb).db
    try:
        return make_engine(db or None)
    except (ArgumentError, NoSuchModuleError, ImportError) as e:
        raise ValueError(f"--db {db!r} is not a database URL this machine can open ({_first_line(e)}). "
                         "Use sqlite:///path/labels.db, or e.g. postgresql+psycopg://user@host/labels with its "
                         "driver installed.") from None
    except OperationalError as e:
        raise ValueError(f"cannot open the database {db or '(default)'!r}: {_first_line(e.orig or e)}") from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated?)"""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            raise ValueError("The two passwords differ.")
        return first, False
    return secrets.token_urlsafe(12), True


def cmd_serve(args) -> int:
    import uvicorn
    from sqlalchemy import func, select

    from citeagent.feedback.app import create_app
    from citeagent.feedback.db import User, transaction
    from citeagent.feedback.judgements import FaultInjection

    cfg = config_from_args(args, LabelServeConfig).app_config(config_from_args(args, LabelDb).db,
                                                              fault=FaultInjection.from_env())
    engine = _engine(args)
    with transaction(engine) as s:
        n_users = s.scalar(select(func.count(User.id)))
    app = create_app(cfg, engine)
    print(f"citeagent label: serving {engine.url.render_as_string(hide_password=True)} at http://{cfg.host}:{cfg.port}/",
          file=sys.stderr)
    if not n_users:
        print("citeagent label: no accounts yet; create one with `citeagent label add-user NAME --admin`", file=sys.stderr)
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not cfg.secure_cookies:
        print("citeagent label: warning: listening beyond localhost without --secure-cookies; serve it behind "
              "HTTPS and pass --secure-cookies", file=sys.stderr)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    return 0


def cmd_add_user(args) -> int:
    from citeagent.feedback.auth import create_user

    config = config_from_args(args, AddUserConfig)
    engine = _engine(args)
    password, generated = _read_password(config.password_stdin)
    create_user(engine, args.username, password, is_admin=config.admin)
    role = "admin" if config.admin else "annotator"
    print(f"created {role} {args.username}" + (f" with password: {password}" if generated else ""))
    return 0


def cmd_set_password(args) -> int:
    from citeagent.feedback.auth import set_password

    password, generated = _read_password(config_from_args(args, SetPasswordConfig).password_stdin)
    set_password(_engine(args), args.username, password)
    print(f"password of {args.username} changed" + (f" to: {password}" if generated else ""))
    return 0


def cmd_deactivate(args) -> int:
    from citeagent.feedback.auth import set_active

    set_active(_engine(args), args.username, False)
    print(f"{args.username} can no longer log in")
    return 0


def _load_rm(spec: str):
    from citeagent.reward.model import load_reward_model

    return load_reward_model(None if spec == "default" else spec)


def cmd_enqueue(args) -> int:
    from citeagent.feedback.queue import enqueue, read_pairs, uncertainty

    config = config_from_args(args, EnqueueConfig)
    items, single = read_pairs(args.file, config.format, config.max_pairs_per_question)
    priorities = uncertainty(_load_rm(config.reward_model), items) if config.reward_model and items else None
    engine = _engine(args)
    result = enqueue(engine, items, skip_existing=config.skip_existing, priorities=priorities)
    msg = f"queued {len(result.added)} pairs"
    if result.skipped_existing:
        msg += f"; {result.skipped_existing} were already queued"
    if single:
        msg += f"; {single} questions had only one distinct answer and gave no pair"
    if priorities:
        msg += "; ordered by reward-model uncertainty"
    print(msg)
    return 0


def cmd_prioritize(args) -> int:
    from citeagent.feedback.queue import reprioritize

    n = reprioritize(_engine(args), _load_rm(config_from_args(args, PrioritizeConfig).reward_model))
    print(f"re-scored {n} unlabelled pairs")
    return 0


def cmd_export(args) -> int:
    from citeagent.feedback.export import export_judgements

    config = config_from_args(args, ExportConfig)
    n = export_judgements(_engine(args), config.out, config.format)
    print(f"exported {n} judgements to {config.out}")
    return 0


def cmd_stats(args) -> int:
    from citeagent.feedback.queue import queue_stats

    print(json.dumps(queue_stats(_engine(args)), indent=2))
    return 0
