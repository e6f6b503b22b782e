"""Which subjects a client certificate stands for: the mTLS counterpart of a tokens file.

A mapping file holds one line per certificate name::

    # certificate name          subjects it stands for (for the gateway: event sources)
    uri:spiffe://acme/db-gw     proxy://db-gw-1 proxy://db-gw-2
    dns:bastion.acme.internal   ssh://bastion
    cn:k8s-prod-apiserver       k8s://prod

A name is written as :func:`auditseal.transport.tls.peer_names` gives it: its kind (``uri``,
``dns``, ``email`` from the subject alternative names, ``cn`` the subject's common name), a
colon, the value. A certificate stands for the subjects of every one of its names that the file
lists (a name on several lines adds up). Blank lines and lines starting with ``#`` are ignored.

Only certificates the server's ``--tls-client-ca`` signed reach this mapping (the TLS handshake
refuses the others), so the CA must be one that issues certificates to these clients only: any
certificate it signs with a listed name stands for that name's subjects.

Like the tokens file, the mapping fails closed: while it is missing, unreadable or malformed, no
certificate stands for anything, and it is reloaded when it changes (see ``watched``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from auditseal.transport.watched import WatchedFile

__all__ = ["KINDS", "CertMap", "CertMapError", "CertMapFile"]

KINDS = ("uri", "dns", "email", "cn")


class CertMapError(Exception):
    """A client-certificate mapping that cannot be read or has a malformed line."""


@dataclass(frozen=True)
class CertMap:
    by_name: dict[str, frozenset[str]]

    @classmethod
    def load(cls, path: str | Path) -> CertMap:
        p = Path(path)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CertMapError(
                f"{p}: cannot read the client-certificate mapping: {exc.strerror}"
            ) from None
        except UnicodeDecodeError as exc:
            raise CertMapError(f"{p}: not UTF-8 text (byte {exc.start})") from None
        by_name: dict[str, set[str]] = {}
        for n, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name, *subjects = text.split()
            kind, sep, value = name.partition(":")
            if not sep or kind not in KINDS or not value:
                raise CertMapError(
                    f"{p}:{n}: {name[:100]!r}: want a certificate name such as "
                    "uri:spiffe://acme/db-gw, dns:host.example, email:ops@example or cn:db-gw"
                )
            if not subjects:
                raise CertMapError(f"{p}:{n}: {name[:100]!r} stands for nothing: list its subjects")
            by_name.setdefault(name, set()).update(subjects)
        return cls({name: frozenset(s) for name, s in by_name.items()})

    def subjects_for(self, names: Iterable[str]) -> tuple[str | None, frozenset[str]]:
        """The first of ``names`` the mapping lists (None if none is) and the subjects of all
        the listed ones."""
        first: str | None = None
        subjects: set[str] = set()
        for name in names:
            if name in self.by_name:
                first = first or name
                subjects |= self.by_name[name]
        return first, frozenset(subjects)


class CertMapFile:
    """A mapping file, reloaded when it changes (looked at at most once per ``interval``). The
    first load raises CertMapError; a later one that fails maps no certificate until fixed."""

    def __init__(self, path: str | Path, *, interval: float = 1.0) -> None:
        self.path = Path(path)
        self._file = WatchedFile(
            path,
            CertMap.load,
            CertMap({}),
            (CertMapError,),
            what="the client-certificate mapping",
            interval=interval,
        )

    def subjects_for(self, names: Iterable[str]) -> tuple[str | None, frozenset[str]]:
        """See :meth:`CertMap.subjects_for`; nothing while the file is missing or malformed."""
        return self._file.current().subjects_for(names)
