"""URLs as every message shows them: scheme, host and port, never a key or a password."""

from __future__ import annotations

import pytest

from auditseal.verifier.urls import public_url, scrub

SECRET_URL = "https://user:SECRETPW789@rpc.example:8443/v3/SECRETKEY123?apikey=SECRETKEY456#frag"
SECRETS = ("SECRETPW789", "SECRETKEY123", "SECRETKEY456")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://sepolia.infura.io/v3/0123abcd", "https://sepolia.infura.io/…"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("http://127.0.0.1:8545/", "http://127.0.0.1:8545"),
        ("https://rpc.example/?key=s3cret", "https://rpc.example/…"),
        ("https://rpc.example#s3cret", "https://rpc.example/…"),
        ("http://user:pw@host:1/", "http://host:1"),
        ("https://APIKEY@RPC.example", "https://rpc.example"),
        ("http://[::1]:8545/x", "http://[::1]:8545/…"),
        (SECRET_URL, "https://rpc.example:8443/…"),
        ("not a url", "(unreadable URL)"),
        ("http://host name/key", "http://(unreadable host)"),
    ],
)
def test_rpc_urls_are_shown_without_path_query_or_credentials(url, shown):
    assert public_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://auditseal:pw@127.0.0.1:5432/auditseal",
            "postgresql://auditseal@127.0.0.1:5432/auditseal",
        ),
        (
            "postgresql://u@h1:5432,h2:5433/db?password=pw&sslmode=require",
            "postgresql://u@h1:5432,h2:5433/db?…",
        ),
        ("postgresql:///db?host=/run/pg&password=pw", "postgresql:///db?…"),
    ],
)
def test_database_urls_keep_user_and_database_but_not_the_password(url, shown):
    assert public_url(url, names=True) == shown


def test_a_library_message_quoting_the_url_is_scrubbed():
    # What requests and web3 say about an unreachable endpoint: the path and query, or all of it.
    said = (
        "HTTPSConnectionPool(host='rpc.example', port=8443): Max retries exceeded with url: "
        "/v3/SECRETKEY123?apikey=SECRETKEY456 (Caused by ...); "
        f"Could not connect to {SECRET_URL}; key SECRETKEY123; "
        "encoded /v3/SECRETKEY123?apikey%3DSECRETKEY456; user:SECRETPW789"
    )
    cleaned = scrub(said, SECRET_URL)
    assert not any(s in cleaned for s in SECRETS), cleaned
    assert "https://rpc.example:8443/…" in cleaned
    assert "Max retries exceeded" in cleaned


def test_a_database_message_loses_only_the_password():
    url = "postgresql://auditseal:S3CRETPASS@127.0.0.1:5432/auditseal"
    said = 'password authentication failed for user "auditseal" (S3CRETPASS)'
    assert scrub(said, url, names=True) == 'password authentication failed for user "auditseal" (…)'


def test_scrub_leaves_text_without_the_url_alone():
    assert scrub("connection refused", "http://127.0.0.1:8545") == "connection refused"
    assert scrub("anything", "") == "anything"
