"""Bearer tokens of the HTTP gateway: one source per token, stored hashed.

The tokens file has one line per token, ``<source> sha256:<hex of SHA-256(token)>``; blank lines
and lines starting with ``#`` are ignored. Tokens are 32 random bytes (URL-safe base64 with an
``ast_`` prefix), so a plain SHA-256 is enough: there is nothing to brute-force. The token itself
is shown once, when it is created, and never written anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from auditseal.ingest.errors import IngestError

__all__ = ["TokenFile", "TokenFileError", "Tokens", "add_token"]

_PREFIX = "sha256:"

log = logging.getLogger(__name__)


class TokenFileError(IngestError):
    """A tokens file that cannot be read or has a malformed line."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class Tokens:
    by_hash: dict[bytes, str]

    @classmethod
    def load(cls, path: str | Path) -> Tokens:
        p = Path(path)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise TokenFileError(f"{p}: cannot read tokens file: {exc.strerror}") from exc
        by_hash: dict[bytes, str] = {}
        for n, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            source, _, hashed = text.rpartition(" ")
            if not source or not hashed.startswith(_PREFIX):
                raise TokenFileError(f"{p}:{n}: want '<source> sha256:<hex>'")
            try:
                digest = bytes.fromhex(hashed[len(_PREFIX) :])
            except ValueError as exc:
                raise TokenFileError(f"{p}:{n}: the hash is not hex") from exc
            if len(digest) != 32:
                raise TokenFileError(f"{p}:{n}: want a 32-byte SHA-256")
            by_hash[digest] = source.strip()
        return cls(by_hash)

    def source_for(self, token: str) -> str | None:
        """The source this token may publish for, or None for an unknown token."""
        # A lookup by hash leaks timing about the hash only, which an attacker cannot steer
        # toward a valid token: no constant-time comparison needed.
        return self.by_hash.get(_digest(token))


class TokenFile:
    """The tokens of a file, reloaded when the file changes (checked at most once a second),
    so tokens can be added without restarting the gateway. A reload that fails keeps the
    previous tokens and logs why."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self._tokens = Tokens.load(self.path)
        self._mtime = self._stat()
        self._checked = clock()

    def _stat(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return -1

    def source_for(self, token: str) -> str | None:
        now = self._clock()
        if now - self._checked >= 1.0:
            self._checked = now
            mtime = self._stat()
            if mtime != self._mtime:
                try:
                    self._tokens = Tokens.load(self.path)
                    self._mtime = mtime
                except TokenFileError as exc:
                    log.error("keeping the previous tokens: %s", exc)
        return self._tokens.source_for(token)


def add_token(path: str | Path, source: str) -> str:
    """Create a token for ``source``, append its hash to ``path`` (mode 0600); return it."""
    if not source or any(c.isspace() for c in source):
        raise TokenFileError(f"source {source!r}: must be non-empty without spaces")
    token = "ast_" + secrets.token_urlsafe(32)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f"{source} {_PREFIX}{_digest(token).hex()}\n")
    return token
