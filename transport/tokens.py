"""Bearer tokens, stored hashed, that fail closed and may expire.

A tokens file holds one line per token::

    <subject> sha256:<hex of SHA-256(token)> [expires=2027-01-31T00:00:00Z]

The subject is what the token stands for: the event source a gateway token may publish for, the
reader a read token identifies. Blank lines and lines starting with ``#`` are ignored. Tokens are
32 random bytes (URL-safe base64 behind a short prefix), so a plain SHA-256 is enough: there is
nothing to brute-force. The token itself is shown once, when it is created, and written nowhere.

The file fails closed: once it is missing, unreadable or has a malformed line, no token is valid
until it is fixed (an error line says why). Keeping the previous tokens instead would keep a
token alive that its operator was revoking when the edit went wrong.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from auditseal.transport.watched import WatchedFile

__all__ = ["TokenFile", "TokenFileError", "Tokens", "add_token", "parse_expiry"]

_PREFIX = "sha256:"
_EXPIRES = "expires="


class TokenFileError(Exception):
    """A tokens file that cannot be read or has a malformed line."""


def _digest(token: str) -> bytes:
    # surrogatepass: a header's undecodable bytes arrive as lone surrogates; such a token is
    # merely unknown, never an exception.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parse_expiry(text: str) -> float:
    """An RFC 3339 time with a zone (``2027-01-31T00:00:00Z``) as Unix seconds."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise TokenFileError(
            f"expiry {text!r}: want an RFC 3339 time such as 2027-01-31T00:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise TokenFileError(f"expiry {text!r}: give a time zone (Z for UTC)")
    return when.timestamp()


@dataclass(frozen=True)
class Grant:
    subject: str
    expires: float | None  # Unix seconds; None: until revoked


@dataclass(frozen=True)
class Tokens:
    by_hash: dict[bytes, Grant]

    @classmethod
    def load(cls, path: str | Path) -> Tokens:
        p = Path(path)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise TokenFileError(f"{p}: cannot read tokens file: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise TokenFileError(f"{p}: not UTF-8 text (byte {exc.start})") from exc
        by_hash: dict[bytes, Grant] = {}
        for n, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if len(fields) not in (2, 3) or not fields[1].startswith(_PREFIX):
                raise TokenFileError(
                    f"{p}:{n}: want '<subject> sha256:<hex> [expires=<RFC 3339 time>]'"
                )
            subject, hashed, *rest = fields
            expires = None
            if rest:
                if not rest[0].startswith(_EXPIRES):
                    raise TokenFileError(f"{p}:{n}: unknown field {rest[0]!r}")
                try:
                    expires = parse_expiry(rest[0][len(_EXPIRES) :])
                except TokenFileError as exc:
                    raise TokenFileError(f"{p}:{n}: {exc}") from None
            try:
                digest = bytes.fromhex(hashed[len(_PREFIX) :])
            except ValueError:
                raise TokenFileError(f"{p}:{n}: the hash is not hex") from None
            if len(digest) != 32:
                raise TokenFileError(f"{p}:{n}: want a 32-byte SHA-256")
            by_hash[digest] = Grant(subject, expires)
        return cls(by_hash)

    def subject_for(self, token: str, now: float) -> str | None:
        """What this token stands for, or None for an unknown or expired token."""
        # A lookup by hash leaks timing about the hash only, which an attacker cannot steer
        # toward a valid token: no constant-time comparison needed.
        grant = self.by_hash.get(_digest(token))
        if grant is None or (grant.expires is not None and now >= grant.expires):
            return None
        return grant.subject


class TokenFile:
    """The tokens of a file, reloaded when it changes (looked at at most once per
    ``interval``), so tokens are added and revoked without a restart. The first load raises
    TokenFileError; a later one that fails leaves no token valid until the file is fixed."""

    def __init__(
        self,
        path: str | Path,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._file = WatchedFile(
            path,
            Tokens.load,
            Tokens({}),
            (TokenFileError,),
            what="the tokens file",
            interval=interval,
            clock=clock,
        )
        self.path = self._file.path
        self._wall = wall

    def subject_for(self, token: str) -> str | None:
        """What ``token`` stands for now, or None (unknown, expired, revoked, or the file is
        missing or malformed)."""
        return self._file.current().subject_for(token, self._wall())


def add_token(
    path: str | Path, subject: str, *, prefix: str = "ast_", expires: datetime | None = None
) -> str:
    """Create a token for ``subject``, append its hash (and expiry) to ``path``, a 0600 file in a
    0700 folder; return the token."""
    if not subject or any(c.isspace() for c in subject):
        raise TokenFileError(f"{subject!r}: must be non-empty without spaces")
    token = prefix + secrets.token_urlsafe(32)
    line = f"{subject} {_PREFIX}{_digest(token).hex()}"
    if expires is not None:
        if expires.tzinfo is None:
            raise TokenFileError("expiry: give a time zone (Z for UTC)")
        line += f" {_EXPIRES}{expires.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    p = Path(path)
    missing = [d for d in (p.parent, *p.parent.parents) if not d.exists()]
    for d in reversed(missing):  # each 0700 (mkdir's parents=True ignores the mode)
        d.mkdir(mode=0o700, exist_ok=True)
        d.chmod(0o700)  # and the umask takes bits from it
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return token
