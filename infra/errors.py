"""The infra package's exception vocabulary; ``exit_code`` becomes the process status."""

from __future__ import annotations

__all__ = ["InfraError", "PortInUseError", "ServiceUnavailableError", "ToolMissingError"]


class InfraError(Exception):
    """Root of every error raised by the infra package.

    Exit codes follow the CLI's: 2 usage or input (a port in use, a missing tool),
    3 a service unavailable (did not answer in time, exited at start).
    """

    exit_code = 3

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class PortInUseError(InfraError):
    """A loopback port that something else already listens on."""

    exit_code = 2

    def __init__(self, port: int, what: str) -> None:
        super().__init__(
            f"port {port} ({what}) is already in use on 127.0.0.1; "
            f"stop what listens there or choose another port"
        )
        self.port = port


class ToolMissingError(InfraError):
    """A program the stack needs (Tansu, Anvil, docker) is not installed."""

    exit_code = 2


class ServiceUnavailableError(InfraError):
    """A service that did not come up, did not answer in time, or would not stop."""

    exit_code = 3
