"""Ed25519 keys inside a PKCS#11 token (an HSM, or SoftHSM2 for tests and the demo).

A key is named by an RFC 7512 URI::

    pkcs11:token=auditseal;object=log-key?pin-source=file:/etc/auditseal/pin&module-path=/usr/lib/x.so

Path attributes: ``token`` (the token label, required), ``serial``, ``object`` (the key's label,
which is also its note key name) and/or ``id`` (percent-encoded bytes), ``type=private``. Query
attributes: ``pin-source`` (``file:PATH``, a file of mode 0600 holding the user PIN; without it
the PIN is read from ``$AUDITSEAL_PKCS11_PIN``) and ``module-path`` (else
``$AUDITSEAL_PKCS11_MODULE``, else Debian's SoftHSM2). ``pin-value`` is refused: a URI is given
on command lines, which every user of the machine can read.

The private key never enters this process: it is generated inside the token as sensitive and
not extractable (:func:`generate_in_token`), and every signature is made by the token
(CKM_EDDSA, pure Ed25519). Errors name the URI field at fault and never carry the PIN.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditseal.sealer.errors import HsmError
from auditseal.sealer.signer import PKCS11_SCHEME, NoteSigner
from auditseal.verifier.errors import FormatError
from auditseal.verifier.note import NoteVerifier, check_key_name, key_id

__all__ = [
    "DEFAULT_MODULE",
    "MODULE_ENV",
    "PIN_ENV",
    "Pkcs11Signer",
    "Pkcs11Uri",
    "generate_in_token",
]

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"  # Debian's softhsm2
MODULE_ENV = "AUDITSEAL_PKCS11_MODULE"
PIN_ENV = "AUDITSEAL_PKCS11_PIN"

_PATH_ATTRS = {"token", "serial", "object", "id", "type"}
_QUERY_ATTRS = {"pin-source", "module-path"}
# DER of CKA_EC_PARAMS naming Ed25519: the OID 1.3.101.112, or the PrintableString "edwards25519".
_ED25519_PARAMS = {bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519"}
# What the key is checked with when opened: a public key object that is not its pair fails here.
_PROBE = b"auditseal: does this token key match its public key?"


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of a ``pkcs11:`` URI auditseal uses; ``from_text`` is the only way in."""

    token: str
    serial: str | None = None
    object: str | None = None
    id: bytes | None = None
    pin_source: str | None = None
    module_path: str | None = None
    attrs: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_text(cls, text: str, names_key: bool = True) -> Pkcs11Uri:
        """Parse and check; ``names_key``: object= or id= is required (not for keygen)."""
        if not text.startswith(PKCS11_SCHEME):
            raise HsmError("pkcs11 URI: must start with 'pkcs11:'")
        path, _, query = text[len(PKCS11_SCHEME) :].partition("?")
        found: dict[str, bytes] = {}
        for part, allowed, sep in ((path, _PATH_ATTRS, ";"), (query, _QUERY_ATTRS, "&")):
            for item in filter(None, part.split(sep)):
                name, eq, raw = item.partition("=")
                if name == "pin-value":
                    raise HsmError(
                        "pkcs11 URI pin-value: refused, a PIN in a URI ends up on command "
                        f"lines; use pin-source=file:PATH (mode 0600) or ${PIN_ENV}"
                    )
                if name not in allowed:
                    where = "path" if sep == ";" else "query"
                    raise HsmError(
                        f"pkcs11 URI {name}: not a {where} attribute auditseal supports "
                        f"(it takes {', '.join(sorted(allowed))})"
                    )
                if not eq:
                    raise HsmError(f"pkcs11 URI {name}: want {name}=VALUE")
                if name in found:
                    raise HsmError(f"pkcs11 URI {name}: given twice")
                found[name] = unquote_to_bytes(raw)
        text_of: dict[str, str] = {}
        for name, value in found.items():
            if name == "id":
                continue
            try:
                text_of[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise HsmError(f"pkcs11 URI {name}: not UTF-8 text") from None
        if not text_of.get("token"):
            raise HsmError("pkcs11 URI token: required (the token's label)")
        if names_key and "object" not in text_of and "id" not in found:
            raise HsmError("pkcs11 URI object: give object=LABEL or id=BYTES to name the key")
        if text_of.get("type", "private") != "private":
            raise HsmError("pkcs11 URI type: must be 'private' (the key that signs)")
        pin_source = text_of.get("pin-source")
        if pin_source is not None and (not pin_source.startswith("file:") or not pin_source[5:]):
            raise HsmError("pkcs11 URI pin-source: want file:PATH")
        return cls(
            token=text_of["token"],
            serial=text_of.get("serial"),
            object=text_of.get("object"),
            id=found.get("id"),
            pin_source=pin_source,
            module_path=text_of.get("module-path"),
            attrs=text_of,
        )

    # --- what the URI points at -------------------------------------------------------------

    def module(self) -> tuple[str, str]:
        """The module's path and where it came from (named in errors)."""
        if self.module_path:
            return self.module_path, f"pkcs11 URI module-path={self.module_path}"
        env = os.environ.get(MODULE_ENV)
        if env:
            return env, f"{MODULE_ENV}={env}"
        return DEFAULT_MODULE, f"PKCS#11 module {DEFAULT_MODULE} (the default; see module-path=)"

    def pin(self) -> str:
        """The user PIN from pin-source or the environment; never in an error message."""
        if self.pin_source is None:
            pin = os.environ.get(PIN_ENV)
            if not pin:
                raise HsmError(
                    f"pkcs11 URI pin-source: no PIN; give pin-source=file:PATH (mode 0600) "
                    f"or set ${PIN_ENV}"
                )
            return pin
        path = Path(self.pin_source.removeprefix("file:").removeprefix("//"))
        where = f"pkcs11 URI pin-source={self.pin_source}"
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise HsmError(
                    f"{where}: PIN file is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 {path}"
                )
            pin = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise HsmError(f"{where}: cannot read the PIN file: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise HsmError(f"{where}: the PIN file is not UTF-8 text") from None
        if not pin:
            raise HsmError(f"{where}: the PIN file is empty")
        return pin

    def key_template(self) -> dict[str, Any]:
        """What names the key: its label and/or id, as attribute names of the template."""
        t: dict[str, Any] = {}
        if self.object is not None:
            t["LABEL"] = self.object
        if self.id is not None:
            t["ID"] = self.id
        return t

    def key_fields(self) -> str:
        """``object=...;id=...`` as given, to name the key in errors."""
        parts = []
        if self.object is not None:
            parts.append(f"object={self.object}")
        if self.id is not None:
            parts.append(f"id={self.id.hex()}")
        return ";".join(parts)


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise HsmError(
            "pkcs11 URI: keys in a token need the 'hsm' extra (python-pkcs11 is not "
            "installed): pip install 'auditseal[hsm]'"
        ) from None
    return pkcs11


# PKCS#11 logs in an application, not a session, and logging one session out logs out them all:
# each token is logged in to once per process, by a session kept open for the process's life.
_logins: dict[tuple[str, str, str | None], tuple[Any, bytes]] = {}
_logins_lock = threading.Lock()


def _open_session(uri: Pkcs11Uri, rw: bool) -> Any:
    """A session on the URI's token, whose user is logged in with the URI's PIN."""
    p11 = _pkcs11()
    path, where = uri.module()
    if not Path(path).is_file():
        raise HsmError(f"{where}: no such file (install softhsm2, or name your HSM's module)")
    try:
        lib = p11.lib(path)
    except p11.PKCS11Error as exc:
        raise HsmError(f"{where}: cannot load the PKCS#11 module: {exc}") from None
    serial = uri.serial.encode() if uri.serial is not None else None
    try:
        tokens = list(lib.get_tokens(token_label=uri.token, token_serial=serial))
    except p11.PKCS11Error as exc:
        raise HsmError(f"{where}: cannot list tokens: {type(exc).__name__}") from None
    if not tokens:
        field_ = f"token={uri.token}" + (f";serial={uri.serial}" if serial else "")
        raise HsmError(f"pkcs11 URI {field_}: no such token in {path}")
    if len(tokens) > 1:
        raise HsmError(f"pkcs11 URI token={uri.token}: several tokens match; add serial=")
    pin = uri.pin()
    pin_where = f"pin-source={uri.pin_source}" if uri.pin_source else f"${PIN_ENV}"
    digest = hashlib.sha256(pin.encode()).digest()
    with _logins_lock:
        held = _logins.get((path, uri.token, uri.serial))
        if held is None:
            try:
                login = tokens[0].open(user_pin=pin)
            except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
                raise HsmError(
                    f"pkcs11 URI {pin_where}: token={uri.token} refused the PIN (wrong PIN)"
                ) from None
            except p11.PinLocked:
                raise HsmError(
                    f"pkcs11 URI {pin_where}: token={uri.token}: the PIN is locked"
                ) from None
            except p11.PKCS11Error as exc:
                raise HsmError(
                    f"pkcs11 URI token={uri.token}: cannot log in: {type(exc).__name__}"
                ) from None
            _logins[(path, uri.token, uri.serial)] = (login, digest)
        elif not hmac.compare_digest(held[1], digest):
            raise HsmError(
                f"pkcs11 URI {pin_where}: not the PIN this process logged in to "
                f"token={uri.token} with (wrong PIN)"
            )
    try:  # inherits the login; closing it does not log the other sessions out
        return tokens[0].open(rw=rw)
    except p11.PKCS11Error as exc:
        raise HsmError(
            f"pkcs11 URI token={uri.token}: cannot open a session: {type(exc).__name__}"
        ) from None


def _public_bytes(p11: Any, pub: Any, where: str) -> bytes:
    A = p11.Attribute
    try:
        params, point = bytes(pub[A.EC_PARAMS]), bytes(pub[A.EC_POINT])
    except p11.PKCS11Error as exc:
        raise HsmError(f"{where}: cannot read the public key: {type(exc).__name__}") from None
    if params not in _ED25519_PARAMS:
        raise HsmError(f"{where}: not an Ed25519 key (an Edwards key of another curve)")
    if len(point) == 34 and point[:2] == b"\x04\x20":  # DER OCTET STRING, as SoftHSM2 gives it
        point = point[2:]
    if len(point) != 32:
        raise HsmError(f"{where}: the public key is not 32 bytes")
    return point


class Pkcs11Signer(NoteSigner):
    """An Ed25519 key in a PKCS#11 token, signing through one logged-in session.

    The session is used by one thread at a time (PKCS#11 sessions are not thread-safe).
    """

    def __init__(self, name: str, public: bytes, key: Any, session: Any, mechanism: Any) -> None:
        check_key_name(name)
        self.name = name
        self._verifier = NoteVerifier(name, key_id(name, public), public)
        self._key = key
        self._session = session
        self._mechanism = mechanism
        self._lock = threading.Lock()
        self.uri = ""  # the URI it was opened with (never holds a PIN: pin-value is refused)

    @property
    def verifier(self) -> NoteVerifier:
        return self._verifier

    def sign(self, message: bytes) -> bytes:
        p11 = _pkcs11()
        with self._lock:
            try:
                sig: bytes = self._key.sign(message, mechanism=self._mechanism)
            except p11.PKCS11Error as exc:
                raise HsmError(f"key {self.name}: the token did not sign: {exc!r}") from None
        return sig

    def close(self) -> None:
        with self._lock:
            self._session.close()

    @classmethod
    def open(cls, text: str) -> Pkcs11Signer:
        """The key a URI names, checked: exactly one Ed25519 private key, sensitive, with its
        public key object (same label and id) and a signature that verifies under it."""
        uri = Pkcs11Uri.from_text(text)
        p11 = _pkcs11()
        A, C, K = p11.Attribute, p11.ObjectClass, p11.KeyType
        where = f"pkcs11 URI {uri.key_fields()}"
        session = _open_session(uri, rw=False)
        try:
            attrs = {getattr(A, k): v for k, v in uri.key_template().items()}
            privs = list(
                session.get_objects({**attrs, A.CLASS: C.PRIVATE_KEY, A.KEY_TYPE: K.EC_EDWARDS})
            )
            if not privs:
                raise HsmError(f"{where}: no Ed25519 private key of that name in token={uri.token}")
            if len(privs) > 1:
                raise HsmError(f"{where}: {len(privs)} private keys match; add id= or object=")
            priv = privs[0]
            if not priv[A.SENSITIVE]:
                raise HsmError(
                    f"{where}: the private key is not sensitive (the token would hand it out); "
                    "make one inside the token with auditseal keygen --pkcs11"
                )
            label, kid = str(priv[A.LABEL]), bytes(priv[A.ID])
            pubs = list(
                session.get_objects(
                    {A.CLASS: C.PUBLIC_KEY, A.KEY_TYPE: K.EC_EDWARDS, A.LABEL: label, A.ID: kid}
                )
            )
            if len(pubs) != 1:
                raise HsmError(
                    f"{where}: want one public key object of the same label and id, "
                    f"found {len(pubs)}"
                )
            public = _public_bytes(p11, pubs[0], where)
            try:
                signer = cls(label, public, priv, session, p11.Mechanism.EDDSA)
                signer.uri = text
            except FormatError as exc:
                raise HsmError(f"{where}: the key's label is not a key name: {exc}") from None
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(signer.sign(_PROBE), _PROBE)
            except InvalidSignature:
                raise HsmError(
                    f"{where}: the public key object is not the private key's pair"
                ) from None
            return signer
        except BaseException:
            session.close()
            raise


def generate_in_token(text: str, name: str) -> Pkcs11Signer:
    """Generate an Ed25519 key pair inside the URI's token, labelled ``name`` (its note key
    name), sensitive and not extractable; refuse if the token already holds a key of that label
    or id. The key's id is the URI's ``id=`` or 8 random bytes."""
    uri = Pkcs11Uri.from_text(text, names_key=False)
    check_key_name(name)
    if uri.object is not None and uri.object != name:
        raise HsmError(
            f"pkcs11 URI object={uri.object}: must equal --name {name} "
            "(a token key's label is its key name)"
        )
    p11 = _pkcs11()
    A, K = p11.Attribute, p11.KeyType
    kid = uri.id if uri.id is not None else os.urandom(8)
    with _open_session(uri, rw=True) as session:
        for attr, value, what in ((A.LABEL, name, f"object={name}"), (A.ID, kid, "id")):
            if list(session.get_objects({attr: value, A.KEY_TYPE: K.EC_EDWARDS})):
                raise HsmError(
                    f"pkcs11 URI {what}: token={uri.token} already holds a key of that "
                    f"{'label' if attr == A.LABEL else 'id'}; refusing to make a second"
                )
        try:
            session.generate_keypair(
                K.EC_EDWARDS,
                mechanism=p11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                store=True,
                label=name,
                id=kid,
                public_template={A.EC_PARAMS: bytes.fromhex("06032b6570"), A.VERIFY: True},
                private_template={
                    A.SENSITIVE: True,
                    A.EXTRACTABLE: False,
                    A.PRIVATE: True,
                    A.SIGN: True,
                },
            )
        except p11.PKCS11Error as exc:
            raise HsmError(
                f"pkcs11 URI token={uri.token}: cannot generate an Ed25519 key pair: "
                f"{type(exc).__name__}"
            ) from None
    return Pkcs11Signer.open(_keyed(uri, name, kid))


def _keyed(uri: Pkcs11Uri, name: str, kid: bytes) -> str:
    from urllib.parse import quote

    path = [f"token={quote(uri.token, safe='')}", f"object={quote(name, safe='')}"]
    path.append("id=" + "".join(f"%{b:02x}" for b in kid))
    if uri.serial is not None:
        path.append(f"serial={quote(uri.serial, safe='')}")
    query = [f"{k}={quote(v, safe='/:')}" for k, v in uri.attrs.items() if k in _QUERY_ATTRS]
    return PKCS11_SCHEME + ";".join(path) + ("?" + "&".join(query) if query else "")
