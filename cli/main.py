"""The ``auditseal`` command: its root group and nothing else.

Each room owns its commands; the root names them here and imports a room only when one of its
commands runs, so that ``auditseal verify`` never loads Kafka clients. Nothing imports this
module but the console script.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from auditseal.cli.output import fail

# "module:attribute" of each command or group, imported when invoked.
COMMANDS = {
    "keygen": "auditseal.sealer.cli:keygen",
    "log": "auditseal.sealer.cli:log",
    "seal": "auditseal.sealer.worker:seal",
    "verify": "auditseal.cli.verify:verify",
    "bundle": "auditseal.cli.verify:bundle",
    "anchor": "auditseal.anchor.cli:anchor",
    "serve": "auditseal.readapi.cli:serve",
    "dashboard": "auditseal.dashboard.server:dashboard",
    "monitor": "auditseal.monitor.watch:monitor",
    "ingest": "auditseal.ingest.cli:ingest",
    "simulate": "auditseal.ingest.cli:simulate",
    "dev": "auditseal.infra.cli:dev",
    "demo": "auditseal.infra.demo:demo",
    "store": "auditseal.cli.store:store",
}
# Modules of the `pipeline` extra: a command that needs a missing one says which extra to install.
PIPELINE_MODULES = {
    "confluent_kafka",
    "aiohttp",
    "prometheus_client",
    "jsonschema",
    "jsonschema_rs",
    "ocsf_json_schema",
}


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, target in COMMANDS.items() if _module_exists(target))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not _module_exists(target):
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="auditseal")
def cli() -> None:
    """auditseal: a tamper-evident audit trail.

    Audit events are sealed into append-only RFC 9162 Merkle logs with signed C2SP checkpoints,
    whose roots are anchored on Ethereum; anyone with the public keys can verify them.
    """


def main() -> None:
    """Entry point: run the CLI, turning every known error into one line and an exit code."""
    # Owner-only files and folders, also for those libraries create (logs, for one):
    # whatever auditseal writes may hold event values, keys or what points at them.
    os.umask(0o077)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", 2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in PIPELINE_MODULES:
            fail(
                f"this command needs the 'pipeline' extra ({exc.name} is not installed): "
                "pip install 'auditseal[pipeline]'",
                2,
            )
        raise
    except Exception as exc:
        # Every room's error root carries its exit code; one place turns them into a line.
        code = getattr(exc, "exit_code", None)
        if isinstance(code, int) and type(exc).__module__.startswith("auditseal."):
            fail(str(exc), code)
        if isinstance(exc, OSError):
            fail(f"{exc.filename or ''}: {exc.strerror or exc}", 2)
        raise
