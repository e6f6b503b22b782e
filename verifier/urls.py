"""URLs as auditseal shows them: without the secrets they may carry.

Providers put API keys in an RPC URL's path (``/v3/KEY``), its query (``?apikey=KEY``) or its
user information (``https://KEY@host``); a PostgreSQL URL may hold a password. Every message,
log line, JSON answer and HTTP response that names such a URL shows :func:`public_url` of it,
and every third-party error text that may quote it passes through :func:`scrub` first. This
module is the one place that decides what of a URL may be shown; it lives in ``verifier`` so
that every room, the verifier's chain module included, can use it.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit

__all__ = ["public_url", "scrub"]

_HOSTS = re.compile(r"[A-Za-z0-9.\-:\[\],%_]+")  # host[:port], comma-separated for libpq URLs
_USER = re.compile(r"[A-Za-z0-9._\-%+]+")
_SECRET_MIN = 6  # parts shorter than this are words like "v3" or "rpc", not keys


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url.strip())
    except ValueError:
        return None


def public_url(url: str, *, names: bool = False) -> str:
    """``scheme://host:port`` of ``url`` (the port only when the URL gives one), with ``/…``
    when a path, query or fragment was left out.

    With ``names`` (a database URL), the user name and the path (the database) stay too, the
    password, query and fragment never; ``?…`` marks a left-out query. Anything that does not
    parse as a URL is shown as ``(unreadable URL)``: never echoed back."""
    parts = _split(url)
    if parts is None or not parts.scheme or not (parts.netloc or names):
        return "(unreadable URL)"
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    if hostinfo and not _HOSTS.fullmatch(hostinfo):  # (a database URL may name no host)
        return f"{parts.scheme.lower()}://(unreadable host)"
    shown = f"{parts.scheme.lower()}://"
    if names:
        user = userinfo.partition(":")[0]
        if _USER.fullmatch(user):
            shown += f"{user}@"
        shown += hostinfo + parts.path
        return shown + ("?…" if parts.query or parts.fragment else "")
    shown += hostinfo.lower()
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment
    return shown + ("/…" if hidden else "")


def _secrets(url: str, names: bool) -> list[str]:
    """The substrings of ``url`` that may be secret, longest first, each also URL-decoded;
    with ``names``, the user name and the path are not among them."""
    parts = _split(url)
    if parts is None:
        return [url] if url else []
    found = {url, url.strip(), parts.query, parts.fragment}
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    found |= {password, f"{user}:{password}" if password else ""}
    for pair in re.split(r"[&;]", parts.query):
        found |= {pair, pair.partition("=")[2]}
    if not names:
        rest = parts.path + (f"?{parts.query}" if parts.query else "")
        found |= {userinfo, user, rest, parts.path, *parts.path.split("/")}
    found |= {unquote(s) for s in found}
    keep = {s for s in found if len(s) >= _SECRET_MIN or s == url or (s == password and len(s) > 2)}
    return sorted(keep - {"", "/"}, key=len, reverse=True)


def scrub(text: str, *urls: str, names: bool = False) -> str:
    """``text`` (a third party's error message, say) with every part of ``urls`` that may hold
    a secret replaced: the URL itself by its :func:`public_url`, its path, query, user
    information and their pieces by ``…`` (with ``names``, as in :func:`public_url`, the user
    name and the path stay)."""
    for url in urls:
        if not url:
            continue
        text = text.replace(url, public_url(url, names=names))
        for secret in _secrets(url, names):
            text = text.replace(secret, "…")
    return text
