"""The container image's health probe: ``python -m auditseal.infra.healthcheck``.

One image runs every command, so the probe is told what to ask by the environment:
``AUDITSEAL_HEALTHCHECK_URL`` (a server's ``/healthz``, or the ``/metrics`` endpoint of ``seal``,
``anchor run`` and ``monitor``) and, for HTTPS, ``AUDITSEAL_HEALTHCHECK_CA`` (the PEM file of the
CA that signed the server's certificate; the system's CAs without it). Healthy is a 200 within
``AUDITSEAL_HEALTHCHECK_TIMEOUT`` seconds (default 4). Exit 0 healthy, 1 not (Docker's
convention), with one line saying why. Standard library only: it runs in the slim image.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

__all__ = ["probe"]


def probe(env: Mapping[str, str]) -> tuple[bool, str]:
    """(healthy, reason) for the endpoint ``env`` names; never raises."""
    url = env.get("AUDITSEAL_HEALTHCHECK_URL", "")
    if not url.startswith(("http://", "https://")):
        return False, "AUDITSEAL_HEALTHCHECK_URL is not set to an http(s):// URL"
    try:
        timeout = float(env.get("AUDITSEAL_HEALTHCHECK_TIMEOUT", "4"))
    except ValueError:
        return False, "AUDITSEAL_HEALTHCHECK_TIMEOUT is not a number"
    context = None
    if url.startswith("https://"):
        try:
            context = ssl.create_default_context(cafile=env.get("AUDITSEAL_HEALTHCHECK_CA") or None)
        except (OSError, ssl.SSLError) as exc:
            return False, f"AUDITSEAL_HEALTHCHECK_CA: {exc}"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:  # refused, timed out, TLS, a malformed URL
        return False, f"{url}: {exc}"
    if status != 200:
        return False, f"{url}: HTTP {status}"
    return True, f"{url}: HTTP 200"


def main() -> None:
    healthy, reason = probe(os.environ)
    print(reason, file=sys.stdout if healthy else sys.stderr)
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
