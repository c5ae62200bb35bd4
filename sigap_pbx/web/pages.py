"""Server-rendered pages: the Jinja2 environment, the page context and static files.

Autoescaping is on for every template, so text from callers and users is escaped
in HTML and in attribute values. Data for a page's script goes through the
`tojson` filter, which also escapes <, >, & and ' so the text cannot end the
script element. Pages load nothing from other hosts (the Content-Security-Policy
header says so to the browser as well).
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from sigap_pbx.web import i18n
from sigap_pbx.web.access import PUBLIC, optional_user, route, signed_in_of

STATIC_ROOT = resources.files("sigap_pbx.web") / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sigap_pbx.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    return env


@cache
def static_url(name: str) -> str:
    """Return the URL of a static file, with a content hash that busts caches."""
    data = (STATIC_ROOT / name).read_bytes()
    return f"/static/{name}?v={hashlib.sha256(data).hexdigest()[:12]}"


def language_of(request: web.Request) -> str:
    return i18n.language(request.cookies.get(i18n.LANG_COOKIE))


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """Render a page template with the signed-in user, language and CSRF token."""
    lang = language_of(request)
    signed_in = signed_in_of(request)

    def t(key: str, **values: Any) -> str:
        text = i18n.translate(key, lang)
        return text.format(**values) if values else text

    body = environment().get_template(template).render(
        t=t,
        lang=lang,
        user=optional_user(request),
        csrf_token=signed_in.session.csrf_token if signed_in else "",
        path=request.path_qs,
        **context,
    )
    return web.Response(
        text=body, status=status, content_type="text/html", headers=page_headers()
    )


def error_page(request: web.Request, status: int, message_key: str) -> web.Response:
    """Render error.html with the message `message_key` in the request's language."""
    message = i18n.translate(message_key, language_of(request))
    return render(request, "error.html", status=status, error_status=status, message=message)


def page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


STATIC_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".wav": "audio/wav",
    ".png": "image/png",
}


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        raise web.HTTPNotFound()
    resource = STATIC_ROOT / name
    if not resource.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=resource.read_bytes(),
        content_type=STATIC_TYPES[suffix],
        headers={
            "Cache-Control": "public, max-age=86400",
            "X-Content-Type-Options": "nosniff",
        },
    )


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/static/{name}", static_file, PUBLIC)
