"""The labelling web app: server-rendered pages, no JavaScript.

Everything shown comes from web pages and is hostile: Jinja autoescapes all of it, links are
made only for http(s) urls, and the Content-Security-Policy forbids every script, so even a
missed escape could not run one. Every form carries a per-session CSRF token; the session cookie
is signed, HttpOnly, SameSite=Lax, and Secure when served over HTTPS (--secure-cookies).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from citeenv.safe_url import safe_http_url

from citeagent.answer import MARKER, Answer
from citeagent.feedback import app_version
from citeagent.feedback.auth import (LoginLimiter, LoginLimits, authenticate, create_user, new_token,
                                     session_fingerprint, set_active, tokens_match)
from citeagent.feedback.db import Assignment, Pair, User, get_setting, make_engine, transaction
from citeagent.feedback.export import judgement_comparisons
from citeagent.feedback.judgements import (MAX_REASON, SCALE, SCALE_LABELS, FaultInjection, SubmitError,
                                           parse_form, record_judgement, skip_assignment)
from citeagent.feedback.queue import next_assignment, queue_stats
from citeagent.reward.schema import to_webgpt_row
from citeagent.safety.rules import load_rules

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class LabelAppConfig:
    db: str = ""  # SQLAlchemy URL; default sqlite under $CITEAGENT_HOME/label/labels.db
    host: str = "127.0.0.1"
    port: int = 8000
    labels_per_pair: int = 1  # judgements wanted per pair (more than 1 measures agreement)
    assignment_ttl_minutes: int = 30  # an abandoned pair goes back to the queue after this
    shuffle_sides: bool = True  # show A on the right half of the time, against position bias
    secure_cookies: bool = False  # set when the app is served over HTTPS
    session_days: int = 7
    login: LoginLimits = field(default_factory=LoginLimits)
    fault: FaultInjection = field(default_factory=FaultInjection)
    rules: str = ""  # the rule file annotators label against; default citeagent/safety/rules.toml

    def __post_init__(self):
        if self.labels_per_pair < 1:
            raise ValueError("--labels-per-pair must be at least 1")
        if self.assignment_ttl_minutes < 1:
            raise ValueError("--assignment-ttl-minutes must be at least 1")
        if self.login.max_failures < 1 or self.login.lockout_seconds < 0:
            raise ValueError("--login-max-failures must be at least 1 and --login-lockout-seconds at least 0")


MAX_ID = 2**63 - 1  # database ids are signed 64-bit; a larger number in a url names nothing


def _check_id(value: int, what: str) -> None:
    if not 1 <= value <= MAX_ID:
        raise SubmitError(404, f"There is no {what} {str(value)[:30]}.")


class _NeedLogin(Exception):
    """Raised by admin pages for a visitor who is not logged in: answered with the login page."""


def _segments(answer: Answer) -> list[dict]:
    """The answer text split at its [n] markers, so the page can link each marker to its quote."""
    have = {q.n for q in answer.quotes}
    out, pos = [], 0
    for m in MARKER.finditer(answer.text):
        if m.start() > pos:
            out.append({"text": answer.text[pos:m.start()], "n": None})
        n = int(m.group(1))
        out.append({"text": m.group(0), "n": n, "ok": n in have})
        pos = m.end()
    if pos < len(answer.text):
        out.append({"text": answer.text[pos:], "n": None})
    return out


def _view(answer: Answer) -> dict:
    return {"declined": answer.declined, "text": answer.text,
            "quotes": [{"n": q.n, "title": q.title, "url": q.url, "safe_url": safe_http_url(q.url), "text": q.text}
                       for q in answer.quotes]}


def _safe_next(target: str | None) -> str:
    # Only same-site paths: "//evil.example" or "https://..." would make the login an open redirect.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/label"


def create_app(cfg: LabelAppConfig | None = None, engine: Engine | None = None) -> FastAPI:
    cfg = cfg or LabelAppConfig()
    engine = engine or make_engine(cfg.db or None)
    version = app_version()
    secret = get_setting(engine, "session_secret", new_token)  # in the database: restarts keep sessions
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    templates = Jinja2Templates(env=env)
    limiter = LoginLimiter(cfg.login)
    rules = load_rules(cfg.rules or None)  # a bad rule file stops the server at start, not at a submit
    env.globals["rules"] = rules.rules

    app = FastAPI(title="citeagent labelling", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    app.state.config = cfg
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    # Added after the header middleware so that it runs first and the session exists for the handlers.
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie="citeagent_label",
                       max_age=cfg.session_days * 86400, same_site="lax", https_only=cfg.secure_cookies)

    # --- helpers ------------------------------------------------------------------------------------
    def csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = new_token()
        return token

    def load_user(request: Request) -> User | None:
        uid = request.session.get("uid")
        if uid is None:
            return None
        with transaction(engine) as s:
            user = s.get(User, uid)
        if user is None or not user.active or not tokens_match(request.session.get("fp"), session_fingerprint(secret, user)):
            request.session.pop("uid", None)
            return None
        return user

    def render(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        ctx.setdefault("user", None)
        ctx.update(csrf_token=csrf(request), app_version=version, flash=request.session.pop("flash", None))
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    def problem(request: Request, status: int, message: str, user: User | None = None) -> HTMLResponse:
        titles = {400: "That did not work", 403: "Not allowed", 404: "Not found", 409: "Already closed"}
        return render(request, "error.html", status, user=user, title=titles.get(status, "Error"), message=message)

    async def checked_form(request: Request) -> dict:
        form = await request.form()
        data = {k: v for k, v in form.items() if isinstance(v, str)}
        if not tokens_match(data.get("csrf_token"), request.session.get("csrf")):
            raise SubmitError(403, "The form's security token is missing or out of date (or cookies are off). "
                                   "Reload the page and submit again.")
        return data

    def login_redirect(request: Request) -> RedirectResponse:
        # back to the page after logging in; a form post (session expired) goes back to labelling
        target = request.url.path if request.method == "GET" else "/label"
        return RedirectResponse(f"/login?next={target}", status_code=303)

    @app.exception_handler(SubmitError)
    async def submit_error(request: Request, exc: SubmitError):
        user = await run_in_threadpool(load_user, request)
        return problem(request, exc.status, exc.message, user)

    # --- pages --------------------------------------------------------------------------------------
    @app.get("/")
    async def home(request: Request):
        return RedirectResponse("/label", status_code=303)

    @app.get("/healthz")
    async def healthz():
        return JSONResponse({"ok": True, "version": version})

    @app.get("/login")
    async def login_page(request: Request, next: str = "/label"):
        if await run_in_threadpool(load_user, request):
            return RedirectResponse(_safe_next(next), status_code=303)
        return render(request, "login.html", next=_safe_next(next), username="", error=None)

    @app.post("/login")
    async def login(request: Request):
        form = await checked_form(request)
        username = (form.get("username") or "").strip()[:200]
        address = request.client.host if request.client else ""
        wait = limiter.retry_after(username, address)
        if wait > 0:  # refused before the password is checked: guessing gains nothing, and costs no bcrypt
            response = render(request, "login.html", 429, next=_safe_next(form.get("next")), username=username,
                              error=f"Too many failed logins. Try again in {int(wait) + 1} seconds.")
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        user = await run_in_threadpool(authenticate, engine, username, form.get("password") or "")
        if user is None:
            limiter.failed(username, address)
            return render(request, "login.html", 401, next=_safe_next(form.get("next")), username=username,
                          error="Wrong username or password (or the account is deactivated).")
        limiter.succeeded(username)
        request.session.clear()  # a fresh session (and CSRF token) for the logged-in user
        request.session.update(uid=user.id, fp=session_fingerprint(secret, user), csrf=new_token())
        return RedirectResponse(_safe_next(form.get("next")), status_code=303)

    @app.post("/logout")
    async def logout(request: Request):
        await checked_form(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/label")
    async def label_page(request: Request):
        user = await run_in_threadpool(load_user, request)
        if user is None:
            return login_redirect(request)

        def work():
            a = next_assignment(engine, user.id, cfg.labels_per_pair, cfg.assignment_ttl_minutes, cfg.shuffle_sides)
            stats = queue_stats(engine, cfg.labels_per_pair)
            if a is None:
                return None, None, stats
            with transaction(engine) as s:
                pair = s.get(Pair, a.pair_id)
            return a, pair, stats

        a, pair, stats = await run_in_threadpool(work)
        if a is None:
            return render(request, "empty.html", user=user, stats=stats)
        ans_a, ans_b = pair.answers()
        left, right = (ans_b, ans_a) if a.swapped else (ans_a, ans_b)
        return render(request, "label.html", user=user, stats=stats, assignment_id=a.id, pair_id=pair.id, nonce=a.nonce,
                      question=pair.question, left=_view(left), right=_view(right), left_segments=_segments(left),
                      right_segments=_segments(right), scale=[(v, SCALE_LABELS[v]) for v in SCALE],
                      max_reason=MAX_REASON, error=None)

    @app.post("/label/{assignment_id}")
    async def submit(request: Request, assignment_id: int):
        user = await run_in_threadpool(load_user, request)
        if user is None:
            return login_redirect(request)
        _check_id(assignment_id, "assignment")
        form = await checked_form(request)
        try:
            pair_id = int(form.get("pair_id", ""))
        except ValueError:
            pair_id = 0
        if not 1 <= pair_id <= MAX_ID:
            raise SubmitError(400, "The form does not say which pair it is for. Reload the labelling page.")
        judgement = parse_form(form, rules)
        outcome, _jid = await run_in_threadpool(record_judgement, engine, user, assignment_id, pair_id,
                                                form.get("nonce", ""), judgement, version, cfg.fault)
        request.session["flash"] = ("Judgement saved." if outcome == "recorded"
                                    else "That judgement was already saved (the form was sent twice); it counts once.")
        return RedirectResponse("/label", status_code=303)

    @app.post("/label/{assignment_id}/skip")
    async def skip(request: Request, assignment_id: int):
        user = await run_in_threadpool(load_user, request)
        if user is None:
            return login_redirect(request)
        _check_id(assignment_id, "assignment")
        form = await checked_form(request)
        await run_in_threadpool(skip_assignment, engine, user, assignment_id, form.get("nonce", ""))
        request.session["flash"] = "Skipped."
        return RedirectResponse("/label", status_code=303)

    # --- admin --------------------------------------------------------------------------------------
    async def admin_user(request: Request) -> User:
        user = await run_in_threadpool(load_user, request)
        if user is None:
            raise _NeedLogin()
        if not user.is_admin:
            raise SubmitError(403, "Only admins can open this page.")
        return user

    @app.exception_handler(_NeedLogin)
    async def need_login(request: Request, exc: _NeedLogin):
        return login_redirect(request)

    def admin_context():
        with transaction(engine) as s:
            counts = dict(s.execute(select(Assignment.user_id, func.count(Assignment.id))
                                    .where(Assignment.status == "done").group_by(Assignment.user_id)).all())
            users = [(u, counts.get(u.id, 0)) for u in s.scalars(select(User).order_by(User.username))]
        return {"users": users, "stats": queue_stats(engine, cfg.labels_per_pair), "labels_per_pair": cfg.labels_per_pair}

    @app.get("/admin")
    async def admin(request: Request):
        user = await admin_user(request)
        ctx = await run_in_threadpool(admin_context)
        return render(request, "admin.html", user=user, error=None, **ctx)

    @app.post("/admin/users")
    async def admin_create_user(request: Request):
        user = await admin_user(request)
        form = await checked_form(request)
        try:
            await run_in_threadpool(create_user, engine, (form.get("username") or "").strip(), form.get("password") or "",
                                    form.get("is_admin") == "yes")
        except ValueError as e:
            ctx = await run_in_threadpool(admin_context)
            return render(request, "admin.html", 400, user=user, error=str(e), **ctx)
        request.session["flash"] = f"Created {form.get('username', '').strip()}."
        return RedirectResponse("/admin", status_code=303)

    @app.post("/admin/users/{user_id}/active")
    async def admin_set_active(request: Request, user_id: int):
        user = await admin_user(request)
        _check_id(user_id, "user")
        form = await checked_form(request)
        if user_id == user.id:
            raise SubmitError(400, "You cannot deactivate your own account.")

        def work():
            with transaction(engine) as s:
                target = s.get(User, user_id)
            if target is None:
                raise SubmitError(404, f"No user {user_id}.")
            set_active(engine, target.username, form.get("active") == "yes")
            return target.username

        name = await run_in_threadpool(work)
        request.session["flash"] = f"{name} is now {'active' if form.get('active') == 'yes' else 'deactivated'}."
        return RedirectResponse("/admin", status_code=303)

    @app.get("/admin/export.jsonl")
    async def admin_export(request: Request):
        await admin_user(request)
        comps = await run_in_threadpool(judgement_comparisons, engine)
        body = "".join(json.dumps(to_webgpt_row(c), ensure_ascii=False) + "\n" for c in comps)
        return Response(body, media_type="application/x-ndjson",
                        headers={"Content-Disposition": 'attachment; filename="comparisons.jsonl"'})

    return app
