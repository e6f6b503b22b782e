"""The ingest package's exception vocabulary.

Every error raised by ``ingest`` derives from :class:`IngestError`. The CLI catches that root
once and maps ``exit_code`` to the process status; everything here is an input error (2). The
HTTP gateway maps the same classes to statuses: :class:`EventTooLarge` and
:class:`BatchTooLarge` to 413, :class:`UnsupportedMediaType` to 415, any other
:class:`EnvelopeError` to 400.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "BatchTooLarge",
    "EnvelopeError",
    "EventTooLarge",
    "FieldError",
    "IngestError",
    "UnsupportedMediaType",
]


class IngestError(Exception):
    """Root of every error raised by the ingest package."""

    exit_code = 2


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, named by a dotted path from the event's root.

    ``path`` is ``"$"`` for the document as a whole, ``"sequence"`` for a top-level attribute,
    ``"data.actor.user"`` for a nested member, and ``"[2].data.actor.user"`` for the third event
    of a batch.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def prefixed(self, prefix: str) -> FieldError:
        """The same error with its path placed under ``prefix`` (``"[2]"``, ``"items[0]"``)."""
        if self.path == "$":
            return FieldError(prefix, self.message)
        if self.path.startswith("["):
            return FieldError(f"{prefix}{self.path}", self.message)
        return FieldError(f"{prefix}.{self.path}", self.message)


class EnvelopeError(IngestError, ValueError):
    """An event (or a body of events) that does not meet the envelope; carries every problem.

    ``errors`` is never empty and lists every problem found, in a stable order, so a proxy author
    can fix them all in one round.
    """

    def __init__(self, errors: Iterable[FieldError], what: str = "invalid event") -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        if not self.errors:
            raise ValueError("EnvelopeError needs at least one FieldError")
        count = len(self.errors)
        listed = "; ".join(str(e) for e in self.errors)
        noun = "error" if count == 1 else "errors"
        super().__init__(f"{what}: {count} {noun}: {listed}")

    @classmethod
    def single(cls, path: str, message: str) -> EnvelopeError:
        """An error with one problem: ``EnvelopeError.single("sequence", "required")``."""
        return cls([FieldError(path, message)])

    def prefixed(self, prefix: str) -> EnvelopeError:
        """The same errors placed under ``prefix``, e.g. an item's index in a batch."""
        return EnvelopeError((e.prefixed(prefix) for e in self.errors), "invalid event")


class EventTooLarge(EnvelopeError):
    """An event larger than the limit. Refused whole, never truncated.

    A subclass of :class:`EnvelopeError` so a batch can report it in place of the item; test for
    this class first where the distinction matters (HTTP 413 rather than 400).
    """

    def __init__(self, size: int, limit: int, path: str = "$") -> None:
        self.size = size
        self.limit = limit
        self.path = path
        super().__init__(
            [FieldError(path, f"event of {size} bytes exceeds the limit of {limit} bytes")],
            "event too large",
        )

    def prefixed(self, prefix: str) -> EventTooLarge:
        return EventTooLarge(self.size, self.limit, FieldError(self.path, "").prefixed(prefix).path)


class BatchTooLarge(EnvelopeError):
    """A body with more items than a batch may hold; raised as soon as the item past the limit
    is reached, before it is parsed, so a body of a million tiny items costs no more than one
    of ``limit`` items."""

    def __init__(self, limit: int, what: str = "events") -> None:
        self.limit = limit
        super().__init__(
            [FieldError("$", f"more than {limit} {what} in one batch")], "batch too large"
        )


class UnsupportedMediaType(IngestError, ValueError):
    """A body whose Content-Type is none of the envelope's media types."""

    def __init__(self, content_type: str, supported: Iterable[str]) -> None:
        self.content_type = content_type
        self.supported = tuple(supported)
        super().__init__(
            f"unsupported content type {content_type!r}; expected one of: "
            + ", ".join(self.supported)
        )
