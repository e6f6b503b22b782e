"""C2SP signed notes and checkpoints: round trips and strict rejection of malformed input."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.signer import Signer
from auditseal.verifier.checkpoint import Checkpoint, open_checkpoint
from auditseal.verifier.errors import FormatError, SignatureError
from auditseal.verifier.note import NoteVerifier, SignedNote, key_id

ROOT = bytes(range(32))
SEED = bytes(range(100, 132))


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer("example.com/log", Ed25519PrivateKey.from_private_bytes(SEED))


def checkpoint_note(signer: Signer, size: int = 5) -> str:
    return signer.sign_note(Checkpoint("example.com/log", size, ROOT).to_text())


def test_checkpoint_body_is_exact():
    body = Checkpoint("example.com/log", 5, ROOT, ("ext one",)).to_text()
    assert body == f"example.com/log\n5\n{base64.b64encode(ROOT).decode()}\next one\n"
    assert Checkpoint.from_text(body) == Checkpoint("example.com/log", 5, ROOT, ("ext one",))


def test_signed_checkpoint_round_trips(signer):
    note = checkpoint_note(signer)
    assert open_checkpoint(note, [signer.verifier]) == Checkpoint("example.com/log", 5, ROOT)
    parsed = SignedNote.from_text(note)
    assert parsed.to_text() == note
    assert parsed.signatures[0].key_id == key_id(signer.name, signer.verifier.public_key)


def test_verifier_key_string_round_trips(signer):
    vkey = signer.verifier.to_string()
    name, hex_id, b64 = vkey.split("+", 2)
    assert name == "example.com/log" and len(hex_id) == 8
    assert base64.b64decode(b64)[0] == 1
    assert NoteVerifier.from_string(vkey) == signer.verifier


def test_private_key_string_round_trips(signer):
    again = Signer.from_private_string(signer.to_private_string())
    assert again.verifier == signer.verifier
    assert signer.to_private_string().startswith("PRIVATE+KEY+example.com/log+")


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda n: n.replace("\n5\n", "\n6\n"), SignatureError),  # body altered
        (lambda n: n.replace("— example.com/log ", "— other.log "), SignatureError),  # unknown key
        (lambda n: n.replace("\n\n", "\n"), FormatError),  # no blank line
        (lambda n: n[:-1], FormatError),  # no final newline
        (lambda n: n.replace("— ", "- "), FormatError),  # not an em dash
        (lambda n: n.replace("— example.com/log ", "— example.com/log  "), FormatError),
        (lambda n: n + "garbage\n", FormatError),  # a line that is not a signature
        (lambda n: n.replace("\n5\n", "\n5\r\n"), FormatError),  # control character
        (lambda n: n.rstrip("\n")[:-4] + "!!!!\n", FormatError),  # bad base64
    ],
)
def test_malformed_or_altered_notes_are_rejected(signer, mutate, error):
    note = checkpoint_note(signer)
    bad = mutate(note)
    assert bad != note
    with pytest.raises(error):
        open_checkpoint(bad, [signer.verifier])


def test_invalid_signature_under_the_pinned_key_is_an_error(signer):
    good = checkpoint_note(signer)
    other = checkpoint_note(signer, size=6)
    forged_line = other.split("\n\n", 1)[1]
    forged = good.split("\n\n", 1)[0] + "\n\n" + forged_line
    with pytest.raises(SignatureError, match="invalid signature"):
        open_checkpoint(forged, [signer.verifier])


def test_note_with_unknown_and_known_signatures_opens(signer):
    stranger = Signer.generate("stranger")
    text = Checkpoint("example.com/log", 5, ROOT).to_text()
    both = (
        text
        + "\n"
        + stranger.sign_note(text).split("\n\n")[1]
        + signer.sign_note(text).split("\n\n")[1]
    )
    assert open_checkpoint(both, [signer.verifier]).size == 5
    with pytest.raises(SignatureError, match="not signed by any pinned key"):
        open_checkpoint(both, [Signer.generate("third").verifier])


@pytest.mark.parametrize(
    "body",
    [
        "example.com/log\n05\nAA==\n",  # leading zero
        "example.com/log\n-1\nAA==\n",
        "example.com/log\n5\n",  # no root
        "example.com/log\n5\n" + base64.b64encode(ROOT).decode(),  # no final newline
        "example.com/log\n5\n" + base64.b64encode(ROOT[:31]).decode() + "\n",  # short root
        "example.com/log\n5\n" + base64.b64encode(ROOT).decode().rstrip("=") + "\n",  # unpadded
        "\n5\n" + base64.b64encode(ROOT).decode() + "\n",  # empty origin
        "example.com/log\n5\n" + base64.b64encode(ROOT).decode() + "\n\n",  # empty extension
        "example.com/log\n\u0661\n" + base64.b64encode(ROOT).decode() + "\n",  # non-ASCII digit
    ],
)
def test_malformed_checkpoint_bodies_are_rejected(body):
    with pytest.raises(FormatError):
        Checkpoint.from_text(body)


@pytest.mark.parametrize(
    "vkey",
    [
        "name+00000000+AQ==",
        "name+zzzzzzzz+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
        "name",
        "na me+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
        "name+00000000+" + base64.b64encode(b"\x02" + bytes(32)).decode(),
        "name+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(),  # wrong key id
    ],
)
def test_malformed_verifier_keys_are_rejected(vkey):
    with pytest.raises(FormatError):
        NoteVerifier.from_string(vkey)


def test_no_pinned_keys_is_an_error(signer):
    with pytest.raises(SignatureError, match="no verifier keys"):
        open_checkpoint(checkpoint_note(signer), [])
