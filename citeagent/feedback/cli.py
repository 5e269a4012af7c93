"""`citeagent label ...`: run the labelling app, manage annotators, fill the queue, export."""
from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys

from citeenv.web.cli import port_number

from citeagent.feedback.app import LabelAppConfig
from citeagent.feedback.auth import LoginLimits

DB_HELP = ("SQLAlchemy database URL (default: $CITEAGENT_LABEL_DB, else sqlite under "
           "$CITEAGENT_HOME/label/labels.db; e.g. postgresql+psycopg://user@host/labels for a team)")


def add_label_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("label", help="human comparisons: the labelling web app, its queue and export",
                              description="Collect human comparisons of cited answers for reward models.")
    sub = p.add_subparsers(dest="label_command", metavar="ACTION", required=True)

    def cmd(name, func, help):
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("--db", default="", help=DB_HELP)
        c.set_defaults(func=func)
        return c

    d = LabelAppConfig()
    s = cmd("serve", cmd_serve, "start the labelling web app")
    s.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}; put a TLS proxy in front "
                                                  "for anything but localhost)")
    s.add_argument("--port", type=port_number, default=d.port, help=f"(default {d.port})")
    s.add_argument("--labels-per-pair", type=int, default=d.labels_per_pair,
                   help=f"judgements wanted per pair, from different annotators (default {d.labels_per_pair})")
    s.add_argument("--assignment-ttl-minutes", type=int, default=d.assignment_ttl_minutes,
                   help=f"an unjudged pair returns to the queue after this (default {d.assignment_ttl_minutes})")
    s.add_argument("--no-shuffle-sides", dest="shuffle_sides", action="store_false",
                   help="always show answer A on the left (default: random side per assignment)")
    s.add_argument("--secure-cookies", action="store_true", help="mark the session cookie Secure (when served over HTTPS)")
    s.add_argument("--login-max-failures", type=int, default=d.login.max_failures,
                   help=f"wrong passwords for one username before its logins are refused for a while "
                        f"(default {d.login.max_failures}; one client address may fail {d.login.per_address_factor}x as often)")
    s.add_argument("--login-lockout-seconds", type=float, default=d.login.lockout_seconds,
                   help=f"how long logins stay refused after too many failures (default {d.login.lockout_seconds:g})")
    s.add_argument("--rules", default=d.rules, metavar="FILE",
                   help="the rule file annotators mark broken rules from (default: citeagent/safety/rules.toml)")

    u = cmd("add-user", cmd_add_user, "create an annotator account")
    u.add_argument("username")
    u.add_argument("--admin", action="store_true", help="may create annotators and export in the web app")
    u.add_argument("--password-stdin", action="store_true", help="read the password from stdin (for scripts)")

    pw = cmd("set-password", cmd_set_password, "change an annotator's password (ends their sessions)")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")

    de = cmd("deactivate", cmd_deactivate, "stop an annotator from logging in (their judgements stay)")
    de.add_argument("username")

    e = cmd("enqueue", cmd_enqueue, "queue pairs for labelling from policy outputs or a JSONL of pairs")
    e.add_argument("file", help="JSONL: one sampled answer per line (question, text, quotes; two or more per "
                                "question), or one pair per line (question, answer_a, answer_b), or webgpt rows")
    e.add_argument("--format", default="auto", choices=["auto", "policy", "pairs"])
    e.add_argument("--max-pairs-per-question", type=int, default=6,
                   help="from policy outputs: at most this many pairs of one question's answers (default 6)")
    e.add_argument("--skip-existing", action="store_true", help="queue only the pairs not queued before")
    e.add_argument("--reward-model", default="",
                   help="active selection: label first the pairs this reward model is least sure of "
                        "('default' for the default model)")

    pr = cmd("prioritize", cmd_prioritize, "re-order unlabelled pairs by a reward model's uncertainty")
    pr.add_argument("--reward-model", default="default")

    x = cmd("export", cmd_export, "export judgements in the openai/webgpt_comparisons schema")
    x.add_argument("--out", required=True, help="a .jsonl file, or a directory for a Hugging Face datasets dataset")
    x.add_argument("--format", default="auto", choices=["auto", "jsonl", "dataset"])

    cmd("stats", cmd_stats, "how far labelling has come")
    return p


def _engine(args):
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    from citeagent.feedback.db import make_engine

    try:
        return make_engine(args.db or None)
    except (ArgumentError, NoSuchModuleError, ImportError) as e:
        raise ValueError(f"--db {args.db!r} is not a database URL this machine can open ({_first_line(e)}). "
                         "Use sqlite:///path/labels.db, or e.g. postgresql+psycopg://user@host/labels with its "
                         "driver installed.") from None
    except OperationalError as e:
        raise ValueError(f"cannot open the database {args.db or '(default)'!r}: {_first_line(e.orig or e)}") from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _read_password(args) -> tuple[str, bool]:
    """(password, generated?)"""
    if args.password_stdin:
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

    cfg = LabelAppConfig(db=args.db, host=args.host, port=args.port, labels_per_pair=args.labels_per_pair,
                         assignment_ttl_minutes=args.assignment_ttl_minutes, shuffle_sides=args.shuffle_sides,
                         secure_cookies=args.secure_cookies, fault=FaultInjection.from_env(),
                         login=LoginLimits(max_failures=args.login_max_failures, lockout_seconds=args.login_lockout_seconds),
                         rules=args.rules)
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

    engine = _engine(args)
    password, generated = _read_password(args)
    create_user(engine, args.username, password, is_admin=args.admin)
    role = "admin" if args.admin else "annotator"
    print(f"created {role} {args.username}" + (f" with password: {password}" if generated else ""))
    return 0


def cmd_set_password(args) -> int:
    from citeagent.feedback.auth import set_password

    password, generated = _read_password(args)
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

    items, single = read_pairs(args.file, args.format, args.max_pairs_per_question)
    priorities = uncertainty(_load_rm(args.reward_model), items) if args.reward_model and items else None
    engine = _engine(args)
    result = enqueue(engine, items, skip_existing=args.skip_existing, priorities=priorities)
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

    n = reprioritize(_engine(args), _load_rm(args.reward_model))
    print(f"re-scored {n} unlabelled pairs")
    return 0


def cmd_export(args) -> int:
    from citeagent.feedback.export import export_judgements

    n = export_judgements(_engine(args), args.out, args.format)
    print(f"exported {n} judgements to {args.out}")
    return 0


def cmd_stats(args) -> int:
    from citeagent.feedback.queue import queue_stats

    print(json.dumps(queue_stats(_engine(args)), indent=2))
    return 0
