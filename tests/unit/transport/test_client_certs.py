"""The client-certificate mapping: what a certificate stands for, failing closed on reload."""

from __future__ import annotations

import os

import pytest

from auditseal.transport.client_certs import CertMap, CertMapError, CertMapFile

MAPPING = """\
# certificate name          sources
uri:spiffe://acme/db-gw     proxy://db-1 proxy://db-2

dns:bastion.acme            ssh://bastion
cn:bastion                  ssh://bastion-2
"""


def _write(path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_a_certificate_stands_for_the_subjects_of_its_listed_names(tmp_path):
    path = tmp_path / "certs"
    path.write_text(MAPPING)
    certs = CertMap.load(path)
    assert certs.subjects_for(["uri:spiffe://acme/db-gw", "cn:db-gw"]) == (
        "uri:spiffe://acme/db-gw",
        frozenset({"proxy://db-1", "proxy://db-2"}),
    )
    assert certs.subjects_for(["dns:bastion.acme", "cn:bastion"]) == (
        "dns:bastion.acme",
        frozenset({"ssh://bastion", "ssh://bastion-2"}),
    )
    assert certs.subjects_for(["cn:stranger", "dns:db-gw"]) == (None, frozenset())
    assert certs.subjects_for([]) == (None, frozenset())


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("spiffe://acme/db-gw proxy://db", "want a certificate name such as"),
        ("ip:10.0.0.1 proxy://db", "want a certificate name such as"),
        ("cn: proxy://db", "want a certificate name such as"),
        ("cn:db-gw", "stands for nothing"),
    ],
)
def test_a_malformed_line_is_named(tmp_path, line, message):
    path = tmp_path / "certs"
    path.write_text(MAPPING + line + "\n")
    with pytest.raises(CertMapError, match=rf"certs:6: .*{message}"):
        CertMap.load(path)


@pytest.mark.parametrize("edit", ["delete", "malformed line", "not utf-8", "unreadable"])
def test_a_broken_mapping_maps_nothing_until_fixed(tmp_path, edit, caplog):
    if edit == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "certs"
    path.write_text(MAPPING)
    certs = CertMapFile(path, interval=0)
    names = ["uri:spiffe://acme/db-gw"]
    assert certs.subjects_for(names)[0] == "uri:spiffe://acme/db-gw"
    if edit == "delete":
        path.unlink()
    elif edit == "malformed line":
        _write(path, MAPPING + "oops\n")
    elif edit == "not utf-8":
        path.write_bytes(MAPPING.encode() + b"cn:\xff x\n")
    else:
        path.chmod(0)
    assert certs.subjects_for(names) == (None, frozenset())
    assert "nothing in the client-certificate mapping is granted until it is fixed" in caplog.text
    if path.exists():
        path.chmod(0o600)
    _write(path, MAPPING)
    assert certs.subjects_for(names)[0] == "uri:spiffe://acme/db-gw"


def test_a_removed_line_maps_no_more_and_a_missing_file_is_refused_at_start(tmp_path):
    path = tmp_path / "certs"
    with pytest.raises(CertMapError, match="cannot read the client-certificate mapping"):
        CertMapFile(path)
    path.write_text(MAPPING)
    certs = CertMapFile(path, interval=0)
    _write(path, MAPPING.replace("uri:spiffe://acme/db-gw     proxy://db-1 proxy://db-2\n", ""))
    assert certs.subjects_for(["uri:spiffe://acme/db-gw"]) == (None, frozenset())
    assert certs.subjects_for(["cn:bastion"])[0] == "cn:bastion"
