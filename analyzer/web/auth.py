"""Who may read and write the analyzer's API when ``analyzer.auth_token_env`` names a token.

Two ways in, both checked in constant time (``hmac.compare_digest``):

- ``Authorization: Bearer <token>``: every protected endpoint, and the only way to write
  (``POST /monitor/ground-truth``), so a browser's cookie can never be ridden by another
  site to write (no CSRF surface).
- A session cookie for browsers, set by ``POST /monitor/login`` (a small form at ``GET
  /monitor/login``) after the token was typed in: ``modelmon_session=<expiry>.<signature>``,
  HMAC-SHA256 over the expiry with a key derived from the token (so changing the token
  ends every session), ``HttpOnly``, ``SameSite=Strict``, ``Path=/monitor``, ``Max-Age`` of
  ``analyzer.session_max_age_s`` (``Secure`` when the request came over TLS). It opens only
  the read-only pages (the report and the runs). ``/monitor/logout`` removes it.

Failed sign-ins are throttled per client address and for all addresses together
(:mod:`analyzer.web.login_throttle`): beyond the limits ``POST /monitor/login`` answers 429
with ``Retry-After`` without looking at the token, and counts it
(``modelmon_login_throttled_total``).

Without a token nothing is protected. Health, status, metrics and the OpenAPI document are
never protected (docs/analyzer.md says what each endpoint reveals).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from html import escape
from urllib.parse import parse_qs, quote

from aiohttp import web

from analyzer.web.login_throttle import LoginThrottle, ThrottleCollector
from analyzer.web.routes import STATE_KEY, ApiError, json_error

__all__ = [
    "COOKIE",
    "THROTTLE_KEY",
    "need_bearer",
    "need_reader",
    "read_capped",
    "session_cookie",
    "setup_auth_routes",
    "valid_session",
]

COOKIE = "modelmon_session"
THROTTLE_KEY = web.AppKey("modelmon_login_throttle", LoginThrottle)
MAX_LOGIN_BODY_BYTES = 4096
_NEXT = re.compile(r"/monitor/[A-Za-z0-9/_.?=&-]*")  # same site, no %-escapes
_DEFAULT_NEXT = "/monitor/report"


def _key(token: str) -> bytes:
    return hmac.new(token.encode(), b"modelmon session cookie v1", hashlib.sha256).digest()


def _sign(token: str, expiry: int) -> str:
    mac = hmac.new(_key(token), f"v1.{expiry}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def session_cookie(token: str, expiry: int) -> str:
    """The cookie value for a session that ends at ``expiry`` (epoch seconds)."""
    return f"{expiry}.{_sign(token, expiry)}"


def valid_session(token: str, value: str, now: float) -> bool:
    """Whether ``value`` was signed with ``token`` and has not expired."""
    expiry_text, _, signature = value.partition(".")
    if not (expiry_text.isascii() and expiry_text.isdigit()) or len(expiry_text) > 12:
        return False
    expiry = int(expiry_text)
    good = hmac.compare_digest(signature.encode(), _sign(token, expiry).encode())
    return good and now < expiry


def _bearer_ok(request: web.Request, token: str) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )


def need_bearer(request: web.Request) -> None:
    """Raise 401 unless the bearer token is given (or no token is configured)."""
    token = request.app[STATE_KEY].token
    if token is not None and not _bearer_ok(request, token):
        raise ApiError(
            401,
            "this endpoint needs 'Authorization: Bearer <token>' with the token from the "
            "environment variable named by analyzer.auth_token_env",
        )


def need_reader(request: web.Request) -> None:
    """Let in the bearer token or a valid session cookie; send browsers to the login form."""
    state = request.app[STATE_KEY]
    token = state.token
    if token is None or _bearer_ok(request, token):
        return
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and valid_session(token, cookie, state.monitor.clock()):
        return
    if "text/html" in request.headers.get("Accept", ""):
        raise web.HTTPSeeOther(f"/monitor/login?next={quote(request.path_qs, safe='')}")
    raise ApiError(
        401,
        "this endpoint needs 'Authorization: Bearer <token>' with the token from the "
        "environment variable named by analyzer.auth_token_env (browsers: sign in at "
        "/monitor/login)",
    )


async def read_capped(request: web.Request, limit: int, what: str) -> bytes:
    """The body, refused with 413 once it passes ``limit`` bytes (never more is held)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"{what} is limited to {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"{what} is limited to {limit} bytes")
    return bytes(body)


def _next(value: str | None) -> str:
    if value and _NEXT.fullmatch(value) and ".." not in value:
        return value
    return _DEFAULT_NEXT


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelmon: sign in</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; background: #f5f6f8; color: #1d2329; }}
form {{ max-width: 360px; margin: 12vh auto; background: #fff; padding: 24px;
  border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.1); }}
input {{ width: 100%; box-sizing: border-box; padding: 8px; margin: 8px 0 14px; font: inherit; }}
button {{ padding: 8px 16px; font: inherit; }}
.error {{ color: #b42318; }}
</style></head><body>
<form method="post" action="/monitor/login">
<h1>modelmon</h1>
{message}
<label for="token">Token (the value of the variable named by
<code>analyzer.auth_token_env</code>)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{next}">
<button type="submit">Sign in</button>
</form></body></html>
"""


def _page(next_url: str, message: str = "", status: int = 200) -> web.Response:
    html = _PAGE.format(message=message, next=escape(next_url))
    response = web.Response(text=html, content_type="text/html", charset="utf-8", status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


async def login_form(request: web.Request) -> web.Response:
    """The sign-in form (``?next=`` a page under /monitor/ to go to afterwards)."""
    return _page(_next(request.query.get("next")))


async def login(request: web.Request) -> web.StreamResponse:
    """Check the typed token; on success set the session cookie and go to ``next``."""
    state = request.app[STATE_KEY]
    body = await read_capped(request, MAX_LOGIN_BODY_BYTES, "the sign-in form")
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    target = _next(form["next"][0] if form.get("next") else None)
    token = state.token
    if token is None:
        raise web.HTTPSeeOther(target)
    throttle = request.app[THROTTLE_KEY]
    address = request.remote or "?"
    wait = throttle.wait(address, state.monitor.clock())
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        response = json_error(
            429, f"too many failed sign-ins; try again in {seconds} s", retry_after_s=seconds
        )
        response.headers["Retry-After"] = str(seconds)
        return response
    given = (form.get("token") or [""])[0]
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        throttle.failed(address, state.monitor.clock())
        return _page(target, '<p class="error">That is not the token.</p>', status=401)
    max_age = state.monitor.config.analyzer.session_max_age_s
    expiry = int(state.monitor.clock()) + max_age
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        COOKIE,
        session_cookie(token, expiry),
        max_age=max_age,
        path="/monitor",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    response.headers["Cache-Control"] = "no-store"
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """Remove the session cookie from this browser and go back to the form."""
    response = web.HTTPSeeOther("/monitor/login")
    response.del_cookie(COOKIE, path="/monitor")
    raise response


async def _count_throttled(app: web.Application) -> None:
    """Expose the throttle's count in the app's registry (made at start-up)."""
    app[STATE_KEY].registry.register(ThrottleCollector(app[THROTTLE_KEY]))


def setup_auth_routes(app: web.Application) -> None:
    """Mount the sign-in form, sign-in and sign-out, with the sign-in throttle."""
    app[THROTTLE_KEY] = LoginThrottle()
    app.on_startup.append(_count_throttled)
    app.router.add_get("/monitor/login", login_form)
    app.router.add_post("/monitor/login", login)
    app.router.add_post("/monitor/logout", logout)
    app.router.add_get("/monitor/logout", logout)
