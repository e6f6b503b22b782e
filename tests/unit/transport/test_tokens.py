"""Tokens fail closed: every way an operator's edit can go wrong leaves no token valid."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from auditseal.transport.tokens import TokenFile, TokenFileError, add_token


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _file(tmp_path, clock, wall=None):
    path = tmp_path / "tokens"
    token = add_token(path, "proxy://db")
    kwargs = {"clock": clock} if wall is None else {"clock": clock, "wall": wall}
    return path, token, TokenFile(path, **kwargs)


def _touch(path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_a_token_stands_for_its_subject_and_is_stored_hashed(tmp_path, clock):
    path, token, tokens = _file(tmp_path, clock)
    assert tokens.subject_for(token) == "proxy://db"
    assert tokens.subject_for(token + "x") is None
    assert tokens.subject_for("ast_\udcff\u00e9") is None  # undecodable header bytes
    assert token not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "edit",
    ["delete", "malformed line", "bad hash", "unknown field", "not utf-8", "unreadable"],
)
def test_a_broken_tokens_file_leaves_no_token_valid(tmp_path, clock, edit, caplog):
    path, token, tokens = _file(tmp_path, clock)
    good = path.read_text()
    if edit == "delete":
        path.unlink()
    elif edit == "malformed line":
        _touch(path, good + "proxy://other\n")  # half a line, left while revoking
    elif edit == "bad hash":
        _touch(path, good + "proxy://other sha256:zz\n")
    elif edit == "unknown field":
        _touch(path, good.strip() + " scope=all\n")
    elif edit == "not utf-8":
        path.write_bytes(good.encode() + b"\xff\n")
    else:
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: replace the file with a folder
            path.chmod(0o600)
            path.unlink()
            path.mkdir()
    clock.now += 1.0
    assert tokens.subject_for(token) is None
    assert "is granted until it is fixed" in caplog.text
    # Fixed, the file counts again at the next look.
    if path.is_dir():
        path.rmdir()
    elif path.exists():
        path.chmod(0o600)
    _touch(path, good)
    clock.now += 1.0
    assert tokens.subject_for(token) == "proxy://db"


def test_a_revoked_token_is_refused_within_one_interval(tmp_path, clock):
    path, token, tokens = _file(tmp_path, clock)
    other = add_token(path, "proxy://ssh")
    clock.now += 1.0
    assert tokens.subject_for(other) == "proxy://ssh"
    _touch(
        path, "".join(line + "\n" for line in path.read_text().splitlines() if "ssh" not in line)
    )
    assert tokens.subject_for(other) == "proxy://ssh"  # not looked at yet (interval)
    clock.now += 1.0
    assert tokens.subject_for(other) is None
    assert tokens.subject_for(token) == "proxy://db"


def test_a_token_expires_at_its_time(tmp_path, clock):
    wall = Clock()
    wall.now = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    path = tmp_path / "tokens"
    token = add_token(path, "reader", expires=datetime(2027, 1, 1, 0, 0, 10, tzinfo=UTC))
    assert "expires=2027-01-01T00:00:10Z" in path.read_text()
    tokens = TokenFile(path, clock=clock, wall=wall)
    assert tokens.subject_for(token) == "reader"
    wall.now += 10
    assert tokens.subject_for(token) is None


def test_a_malformed_file_at_start_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# comment\n\nproxy://db sha256:00 expires=tomorrow\n")
    with pytest.raises(TokenFileError, match=r"tokens:3: expiry 'tomorrow'"):
        TokenFile(path)
    with pytest.raises(TokenFileError, match="cannot read"):
        TokenFile(tmp_path / "missing")


def test_an_expiry_needs_a_zone(tmp_path):
    with pytest.raises(TokenFileError, match="time zone"):
        add_token(tmp_path / "t", "reader", expires=datetime.now() + timedelta(days=1))
