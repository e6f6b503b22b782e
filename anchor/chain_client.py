"""The web3 plumbing of the anchor package: connect, load the chain key, send one signed
EIP-1559 transaction and wait for its receipt. ``deploy`` uses it today, the anchor service
will reuse it.

Every web3, requests and RPC failure is converted here, at the boundary, into an AnchorError
with one readable line: an endpoint that does not answer is ChainUnavailable (exit 3), a
revert is TransactionReverted (with the decoded custom error when the ABI is given), an
account that cannot pay is InsufficientFunds.

Secrets: the private key lives only inside ChainKey, whose repr shows the address; no message
raised here contains it. RPC URLs are shown as scheme://host:port only, because providers put
API keys in the path or query (``auditseal.verifier.urls``: messages carry ``public_url`` of
the endpoint, and any third-party text is scrubbed of the URL's secret parts).
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils.abi import abi_to_signature
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import (
    BadResponseFormat,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    Web3RPCError,
)
from web3.types import TxParams, TxReceipt

from auditseal.anchor import keystore
from auditseal.anchor.errors import (
    AnchorError,
    ChainIdMismatch,
    ChainUnavailable,
    FeeCapExceeded,
    InputError,
    InsufficientFunds,
    KeyFileError,
    TransactionReverted,
)
from auditseal.anchor.keystore import Passphrase
from auditseal.verifier.urls import public_url, scrub

__all__ = [
    "DEFAULT_RPC",
    "ENV_KEY",
    "ENV_RPC",
    "ChainClient",
    "ChainKey",
    "Fees",
    "Receipt",
    "decode_revert",
    "gwei_to_wei",
]

DEFAULT_RPC = "http://127.0.0.1:8545"
ENV_RPC = "AUDITSEAL_RPC"
ENV_KEY = "AUDITSEAL_CHAIN_KEY"
GWEI = 10**9
_KEY_RE = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")
_GAS_MARGIN = Decimal("1.2")  # over eth_estimateGas, for state that moves before inclusion


def gwei_to_wei(gwei: Decimal | float | str) -> int:
    """Exact conversion (through Decimal, so 1.5 gwei is 1_500_000_000 wei)."""
    return int(Decimal(str(gwei)) * GWEI)


def _eth(wei: int) -> str:
    return f"{Decimal(wei) / 10**18:f} ETH"


def _gwei(wei: int) -> str:
    return f"{Decimal(wei) / GWEI:f} gwei"


# --- the key ---------------------------------------------------------------------------------


class ChainKey:
    """A secp256k1 private key that signs transactions. Its repr shows only the address.

    Load it with ``from_file`` (an encrypted keystore, or a file holding ``0x`` + 64 hex
    digits; either MUST NOT be accessible by group or others, as for the sealer's keys),
    ``from_env`` or ``load``. ``plain_file`` names the file of a key read unencrypted from
    disk (None for a keystore or the environment), for ``keystore.plain_key_warning``.
    """

    __slots__ = ("_account", "plain_file")

    def __init__(self, account: LocalAccount, plain_file: str | None = None) -> None:
        self._account = account
        self.plain_file = plain_file

    def __repr__(self) -> str:
        return f"ChainKey({self.address})"

    __str__ = __repr__

    @property
    def address(self) -> str:
        return str(self._account.address)

    @classmethod
    def generate(cls) -> ChainKey:
        """A new random key (from the operating system's CSPRNG)."""
        return cls(Account.create())

    @classmethod
    def from_hex(cls, text: str, where: str) -> ChainKey:
        """Parse ``0x`` + 64 hex digits (surrounding whitespace allowed). ``where`` names the
        source in errors; the text itself never appears in them."""
        candidate = text.strip()
        if not _KEY_RE.fullmatch(candidate):
            raise KeyFileError(
                f"{where}: not a hex private key (want 0x followed by 64 hex digits, or a "
                "Web3 Secret Storage keystore)"
            )
        return cls._from_bytes(bytes.fromhex(candidate.removeprefix("0x")), where)

    @classmethod
    def _from_bytes(cls, key: bytes, where: str) -> ChainKey:
        try:
            account = Account.from_key(key)
        except Exception:  # the library's message may quote the key: say nothing about it
            raise KeyFileError(f"{where}: not a valid secp256k1 private key") from None
        return cls(account)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], passphrase: Passphrase | None = None
    ) -> ChainKey:
        """Load a key file: a keystore (a JSON object; opened with ``passphrase``, by default
        ``$AUDITSEAL_KEY_PASSPHRASE``) or a plain hex key. Either MUST NOT be accessible by
        group or others (chmod 600)."""
        p = Path(path)
        try:
            mode = p.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyFileError(
                    f"{p}: key file is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 {p}"
                )
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyFileError(f"{p}: cannot read key file: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise KeyFileError(f"{p}: not a hex private key (not text)") from None
        if keystore.looks_like_keystore(text):
            secret = keystore.decrypt(text, passphrase or keystore.Passphrase(), str(p))
            return cls._from_bytes(secret, str(p))
        key = cls.from_hex(text, str(p))
        key.plain_file = str(p)
        return key

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChainKey | None:
        """The key in ``$AUDITSEAL_CHAIN_KEY``, or None if it is unset or empty."""
        value = (os.environ if environ is None else environ).get(ENV_KEY)
        return cls.from_hex(value, f"${ENV_KEY}") if value else None

    @classmethod
    def load(
        cls,
        key_file: str | os.PathLike[str] | None,
        environ: Mapping[str, str] | None = None,
        passphrase: Passphrase | None = None,
    ) -> ChainKey:
        """The key from ``key_file`` if given (see ``from_file``), else from
        ``$AUDITSEAL_CHAIN_KEY``."""
        if key_file is not None:
            return cls.from_file(key_file, passphrase or keystore.Passphrase(environ=environ))
        key = cls.from_env(environ)
        if key is None:
            raise KeyFileError(
                "no chain key: give --key FILE (a keystore, or 0x + 64 hex digits; mode 0600) "
                f"or set ${ENV_KEY}"
            )
        return key

    def to_keystore(self, passphrase: str, *, kdf: str = "scrypt", light: bool = False) -> bytes:
        """This key as a Web3 Secret Storage keystore under ``passphrase`` (JSON bytes)."""
        return keystore.encrypt(bytes(self._account.key), passphrase, kdf=kdf, light=light)

    def sign(self, tx: TxParams) -> bytes:
        """The raw signed transaction (EIP-2718 envelope) for ``eth_sendRawTransaction``."""
        signed = self._account.sign_transaction(cast(dict[str, Any], tx))
        return bytes(signed.raw_transaction)


# --- results and reverts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fee fields of one transaction, in wei."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    base_fee_per_gas: int


@dataclass(frozen=True)
class Receipt:
    """A mined, successful transaction. ``raw`` is web3's receipt (logs, for event decoding)."""

    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int
    effective_gas_price: int
    contract_address: str | None
    raw: TxReceipt


def decode_revert(abi: Sequence[Mapping[str, Any]], data: object) -> tuple[str, dict[str, Any]]:
    """(error name, arguments) of a custom-error revert ``data`` (``0x`` + selector + args).

    Unknown selectors give (``"0x<selector>"``, {}); ``Error(string)`` gives ("Error", {...}).
    """
    raw = bytes.fromhex(data[2:]) if isinstance(data, str) and data.startswith("0x") else b""
    if len(raw) < 4:
        return ("revert", {})
    errors = [e for e in abi if e.get("type") == "error"]
    errors.append(
        {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]}
    )
    for error in errors:
        if keccak(text=abi_to_signature(cast(Any, error)))[:4] == raw[:4]:
            inputs = error.get("inputs", [])
            try:
                values = abi_decode([i["type"] for i in inputs], raw[4:])
            except Exception:  # malformed revert data: keep the name
                return (str(error["name"]), {})
            return (str(error["name"]), {i["name"]: v for i, v in zip(inputs, values, strict=True)})
    return ("0x" + raw[:4].hex(), {})


def _describe(name: str, args: Mapping[str, Any]) -> str:
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


# --- the client ------------------------------------------------------------------------------


class ChainClient:
    """One JSON-RPC endpoint over HTTP(S), with its chain id checked once at ``connect``.

    Methods raise AnchorError subclasses only (see the module docstring).
    """

    def __init__(self, w3: Web3, url: str, chain_id: int, timeout: float | None = None) -> None:
        self.w3 = w3
        self._url = url  # never shown: only ``label`` is
        self.label = public_url(url)
        self.chain_id = chain_id
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ChainClient({self.label}, chain {self.chain_id})"

    def _clean(self, text: str) -> str:
        """``text`` (a node's or a library's message) without the endpoint's secrets."""
        return scrub(text, self._url)

    @classmethod
    def connect(
        cls, rpc_url: str, *, timeout: float = 10.0, expected_chain_id: int | None = None
    ) -> ChainClient:
        """Connect and read the chain id; raise ChainIdMismatch if it is not the expected one.

        ``timeout`` bounds each RPC request. Requests are not retried: a caller that wants
        retries (the anchor service) loops around whole operations.
        """
        if urlsplit(rpc_url).scheme not in ("http", "https"):
            raise InputError(f"RPC URL {public_url(rpc_url)}: want http:// or https://")
        provider = HTTPProvider(
            rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
        )
        client = cls(Web3(provider), rpc_url, 0, timeout)
        with client._rpc("eth_chainId"):
            client.chain_id = int(client.w3.eth.chain_id)
        if expected_chain_id is not None and client.chain_id != expected_chain_id:
            raise ChainIdMismatch(expected_chain_id, client.chain_id)
        return client

    @contextmanager
    def _rpc(self, what: str) -> Iterator[None]:
        """Convert everything web3 and requests raise inside into AnchorError."""
        try:
            yield
        except AnchorError as exc:
            exc.args = (self._clean(str(exc)), *exc.args[1:])  # may quote a node's message
            raise
        except requests.exceptions.Timeout:
            within = f" within {self.timeout:g} s" if self.timeout else ""
            raise ChainUnavailable(
                f"RPC endpoint {self.label} did not answer{within} ({what})"
            ) from None
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise ChainUnavailable(
                f"RPC endpoint {self.label} answered HTTP {status} ({what})"
            ) from None
        except (BadResponseFormat, json.JSONDecodeError):
            raise ChainUnavailable(
                f"RPC endpoint {self.label} does not answer JSON-RPC ({what})"
            ) from None
        except (requests.exceptions.ConnectionError, ProviderConnectionError, OSError) as exc:
            raise ChainUnavailable(
                f"RPC endpoint {self.label} is unreachable: {_connection_reason(exc)} ({what})"
            ) from None
        except Web3RPCError as exc:
            raise AnchorError(
                f"RPC endpoint {self.label}: {what} failed: {self._clean(_first_line(exc))}", 3
            ) from None

    # --- reads -------------------------------------------------------------------------------

    def contract(self, address: str, abi: Sequence[Mapping[str, Any]]) -> Contract:
        return self.w3.eth.contract(address=to_checksum_address(address), abi=cast(Any, abi))

    def balance(self, address: str) -> int:
        with self._rpc("eth_getBalance"):
            return int(self.w3.eth.get_balance(to_checksum_address(address)))

    def code(self, address: str) -> str:
        with self._rpc("eth_getCode"):
            return "0x" + bytes(self.w3.eth.get_code(to_checksum_address(address))).hex()

    def call(
        self, contract: Contract, function: str, *args: Any, abi: Sequence[Mapping[str, Any]]
    ) -> Any:
        """``eth_call`` of a view function; a revert becomes TransactionReverted."""
        with self._rpc(f"eth_call {function}"), self._reverts(function, abi, None):
            return getattr(contract.functions, function)(*args).call()

    def fees(self, max_fee_cap: int | None = None) -> Fees:
        """Fees for a transaction now: priority fee from eth_maxPriorityFeePerGas, max fee
        2 x base fee + priority fee (room for six full blocks of base-fee rises), both capped
        at ``max_fee_cap`` wei. A base fee above the cap is FeeCapExceeded (retry later)."""
        with self._rpc("eth_getBlockByNumber/eth_maxPriorityFeePerGas"):
            block = self.w3.eth.get_block("latest")
            priority = int(self.w3.eth.max_priority_fee)
        base = int(block.get("baseFeePerGas") or 0)
        max_fee = 2 * base + priority
        if max_fee_cap is not None:
            if base >= max_fee_cap:
                raise FeeCapExceeded(
                    f"the base fee is {_gwei(base)}, at or above the cap of {_gwei(max_fee_cap)}: "
                    "retry later or raise --max-fee-gwei"
                )
            max_fee = min(max_fee, max_fee_cap)
        return Fees(max_fee, min(priority, max_fee - base), base)

    # --- transactions ------------------------------------------------------------------------

    @contextmanager
    def _reverts(
        self, what: str, abi: Sequence[Mapping[str, Any]] | None, tx_hash: str | None
    ) -> Iterator[None]:
        try:
            yield
        except ContractLogicError as exc:
            name, args = decode_revert(abi or [], exc.data)
            detail = _describe(name, args) if name != "revert" else (exc.message or "revert")
            raise TransactionReverted(f"{what} reverts: {detail}", tx_hash, name, args) from None

    def transact(
        self,
        key: ChainKey,
        tx: TxParams,
        *,
        what: str,
        abi: Sequence[Mapping[str, Any]] | None = None,
        max_fee_cap: int | None = None,
        gas: int | None = None,
        timeout: float = 120.0,
        confirmations: int = 1,
        poll: float = 1.0,
    ) -> Receipt:
        """Sign ``tx`` (``to``/``data``/``value``) as an EIP-1559 transaction, send it, and
        return its receipt once it has ``confirmations`` blocks (1: mined).

        Steps: (1) estimate gas unless ``gas`` is given (a revert here is TransactionReverted,
        nothing is sent); (2) fees, capped at ``max_fee_cap`` wei; (3) refuse with
        InsufficientFunds if the balance cannot cover gas limit x max fee + value, as nodes
        do; (4) sign with the pending nonce and send; (5) wait. Timing out in (5) is
        ChainUnavailable: the transaction MAY still be mined, so look its hash up before
        sending again. A receipt with status 0 is TransactionReverted.
        """
        sender = key.address
        base_tx: dict[str, Any] = {"from": sender, **tx}
        if gas is None:
            with self._rpc("eth_estimateGas"), self._reverts(what, abi, None):
                estimate = int(self.w3.eth.estimate_gas(cast(TxParams, base_tx)))
            gas = int(estimate * _GAS_MARGIN)
        fees = self.fees(max_fee_cap)
        value = int(base_tx.get("value", 0))
        balance = self.balance(sender)
        needed = gas * fees.max_fee_per_gas + value
        if balance < needed:
            raise InsufficientFunds(
                f"account {sender} holds {_eth(balance)} on chain {self.chain_id}; {what} may "
                f"cost up to {_eth(needed)} (gas limit {gas} x max fee "
                f"{_gwei(fees.max_fee_per_gas)}): fund the account and retry"
            )
        with self._rpc("eth_getTransactionCount"):
            nonce = int(self.w3.eth.get_transaction_count(to_checksum_address(sender), "pending"))
        signed = key.sign(
            cast(
                TxParams,
                {
                    **base_tx,
                    "type": 2,
                    "chainId": self.chain_id,
                    "nonce": nonce,
                    "gas": gas,
                    "maxFeePerGas": fees.max_fee_per_gas,
                    "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
                    "value": value,
                },
            )
        )
        with self._rpc("eth_sendRawTransaction"):
            try:
                tx_hash = "0x" + bytes(self.w3.eth.send_raw_transaction(signed)).hex()
            except Web3RPCError as exc:
                raise _refused(exc, what, sender) from None
        return self.wait(
            tx_hash, what=what, timeout=timeout, confirmations=confirmations, poll=poll
        )

    def wait(
        self,
        tx_hash: str,
        *,
        what: str,
        timeout: float = 120.0,
        confirmations: int = 1,
        poll: float = 1.0,
    ) -> Receipt:
        """Wait until ``tx_hash`` is mined and ``confirmations`` blocks deep (the receipt is
        re-read each time, so a reorganisation that moved it is followed)."""
        deadline = time.monotonic() + timeout
        with self._rpc("eth_getTransactionReceipt"):
            try:
                raw = self.w3.eth.wait_for_transaction_receipt(
                    HexStr(tx_hash), timeout=timeout, poll_latency=poll
                )
                while int(self.w3.eth.block_number) - int(raw["blockNumber"]) + 1 < confirmations:
                    if time.monotonic() > deadline:
                        raise TimeExhausted("confirmations")
                    time.sleep(poll)
                    raw = self.w3.eth.wait_for_transaction_receipt(
                        HexStr(tx_hash),
                        timeout=max(deadline - time.monotonic(), poll),
                        poll_latency=poll,
                    )
            except TimeExhausted:
                raise ChainUnavailable(
                    f"{what}: transaction {tx_hash} not mined with {confirmations} "
                    f"confirmation(s) within {timeout:g} s; it may still be: look it up before "
                    "sending again"
                ) from None
        if int(raw["status"]) != 1:
            raise TransactionReverted(
                f"{what}: transaction {tx_hash} reverted in block {raw['blockNumber']}", tx_hash
            )
        address = raw.get("contractAddress")
        return Receipt(
            tx_hash=tx_hash,
            block_number=int(raw["blockNumber"]),
            block_hash="0x" + bytes(raw["blockHash"]).hex(),
            gas_used=int(raw["gasUsed"]),
            effective_gas_price=int(raw.get("effectiveGasPrice") or 0),
            contract_address=to_checksum_address(address) if address else None,
            raw=raw,
        )


def _connection_reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("Temporary failure in name resolution", "host name not found"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
    ):
        if needle in text:
            return reason
    return type(exc).__name__


def _refused(exc: Web3RPCError, what: str, sender: str) -> AnchorError:
    """The node refused a signed transaction: say why in one line."""
    message = _first_line(exc)
    lowered = message.lower()
    if "insufficient funds" in lowered:
        return InsufficientFunds(f"{what}: account {sender} cannot pay for the gas: {message}")
    if "nonce too low" in lowered or "already known" in lowered:
        return AnchorError(
            f"{what}: another transaction from {sender} went first ({message}); retry", 3
        )
    if "fee cap" in lowered or "underpriced" in lowered:
        return FeeCapExceeded(f"{what}: the node refused the fees ({message})")
    return AnchorError(f"{what}: the node refused the transaction: {message}")


def _first_line(exc: Web3RPCError) -> str:
    lines = str(exc.message or "").splitlines()
    return lines[0] if lines else type(exc).__name__
