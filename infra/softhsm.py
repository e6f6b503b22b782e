"""A SoftHSM2 token in a directory of its own, for the demo and the tests.

SoftHSM2 (Debian ``softhsm2``) is a real PKCS#11 module that keeps its tokens in files: it lets
the HSM path of auditseal (``--key pkcs11:...``, ``keygen --pkcs11``) run without hardware. Its
configuration file (``$SOFTHSM2_CONF``) names the token directory, so a token made here touches
no system-wide state. It is not an HSM: its keys are files on this disk, encrypted with the PIN.

The PINs never go on a command line: ``softhsm2-util --init-token`` reads them from a
pseudo-terminal. The user PIN is kept in ``pin`` (mode 0600) for ``pin-source=file:``; the SO PIN
is not kept (nobody needs to reset the user PIN of a throwaway token).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from auditseal.infra.errors import InfraError, ToolMissingError
from auditseal.sealer.pkcs11_signer import DEFAULT_MODULE, MODULE_ENV

__all__ = ["CONF_ENV", "SoftHsmToken", "find_softhsm", "init_token"]

CONF_ENV = "SOFTHSM2_CONF"
INSTALL_HINT = "apt-get install -y softhsm2"


@dataclass(frozen=True)
class SoftHsmToken:
    """A token: its configuration file, module, label and user PIN file."""

    conf: Path
    module: str
    label: str
    pin_file: Path

    def uri(self, obj: str | None = None) -> str:
        """The ``pkcs11:`` URI of key ``obj`` in this token (of the token alone without it)."""
        path = f"token={quote(self.label, safe='')}"
        if obj is not None:
            path += f";object={quote(obj, safe='')}"
        query = f"pin-source=file:{quote(str(self.pin_file), safe='/')}"
        query += f"&module-path={quote(self.module, safe='/')}"
        return f"pkcs11:{path}?{query}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs in its environment to see this token."""
        return {CONF_ENV: str(self.conf)}


def find_softhsm() -> tuple[str, str]:
    """``softhsm2-util`` and the module's path; ToolMissingError (exit 2) naming the package."""
    util = shutil.which("softhsm2-util")
    module = os.environ.get(MODULE_ENV) or DEFAULT_MODULE
    if util is None:
        raise ToolMissingError(f"softhsm2-util not found (SoftHSM2): {INSTALL_HINT}")
    if not Path(module).is_file():
        raise ToolMissingError(f"{module}: no PKCS#11 module (SoftHSM2): {INSTALL_HINT}")
    return util, module


def init_token(directory: Path, label: str) -> SoftHsmToken:
    """Create ``directory`` (0700) with a SoftHSM2 configuration, a token directory holding one
    fresh token named ``label``, and the token's user PIN file; random PINs."""
    util, module = find_softhsm()
    tokens = directory / "tokens"
    tokens.mkdir(mode=0o700, parents=True, exist_ok=False)
    os.chmod(directory, 0o700)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    user_pin, so_pin = secrets.token_hex(16), secrets.token_hex(16)
    pin_file = directory / "pin"
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(user_pin + "\n")
    # softhsm2-util reads PINs from a terminal only: give it a pseudo-terminal, not argv.
    controller, terminal = os.openpty()
    try:
        proc = subprocess.Popen(
            [util, "--init-token", "--free", "--label", label],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, CONF_ENV: str(conf)},
        )
        os.close(terminal)
        terminal = -1
        os.write(controller, f"{so_pin}\n{so_pin}\n{user_pin}\n{user_pin}\n".encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    if proc.returncode != 0:
        last = (err or out).decode(errors="replace").strip().splitlines()[-1:]
        raise InfraError(f"softhsm2-util --init-token failed: {' '.join(last)}", exit_code=3)
    return SoftHsmToken(conf, module, label, pin_file)
