"""One spelling per option across every command: walks the whole ``auditseal`` command tree
(groups included, since `serve` and `dashboard` are groups that also run a server)."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from auditseal.cli.main import cli

OLD_SPELLINGS = {"--metrics-port", "--host", "--port"}
"""Replaced by --metrics-listen HOST:PORT|off and --listen HOST:PORT; kept only as hidden
aliases that warn."""
SERVERS = {("serve",), ("dashboard",), ("ingest", "serve")}
"""Commands that answer HTTP clients: each takes --listen."""
METRICS = {("seal",), ("anchor", "run"), ("monitor",)}
"""Long-running services with a separate Prometheus endpoint: each takes --metrics-listen."""


def commands() -> Iterator[tuple[tuple[str, ...], click.Command]]:
    def walk(
        command: click.Command, path: tuple[str, ...], ctx: click.Context
    ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, (path, name)
                yield from walk(sub, (*path, name), click.Context(sub, parent=ctx, info_name=name))

    yield from walk(cli, (), click.Context(cli, info_name="auditseal"))


def visible_options(command: click.Command) -> set[str]:
    return {
        opt
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden
        for opt in (*p.opts, *p.secondary_opts)
    }


def hidden_options(command: click.Command) -> set[str]:
    return {o for p in command.params if isinstance(p, click.Option) and p.hidden for o in p.opts}


TREE = dict(commands())


def test_the_tree_holds_every_command():
    assert {("seal",), ("verify",), ("dev", "up"), ("log", "proof", "inclusion")} <= set(TREE)
    assert set(TREE) >= SERVERS | METRICS


@pytest.mark.parametrize("path", sorted(TREE), ids=lambda p: " ".join(p) or "auditseal")
def test_no_command_shows_an_old_spelling(path):
    assert not visible_options(TREE[path]) & OLD_SPELLINGS


@pytest.mark.parametrize("path", sorted(SERVERS), ids=" ".join)
def test_every_server_listens_with_listen(path):
    assert "--listen" in visible_options(TREE[path])


@pytest.mark.parametrize("path", sorted(METRICS), ids=" ".join)
def test_every_service_exports_metrics_with_metrics_listen(path):
    assert "--metrics-listen" in visible_options(TREE[path])


def test_no_other_command_listens_without_listen():
    # A command with a port option of its own must be a server using --listen, or the
    # dev stack's launcher (whose --*-port name the ports of the services it starts).
    for path, command in TREE.items():
        if path[:1] == ("dev",):
            continue
        ports = {o for o in visible_options(command) if o.endswith("-port")}
        assert not ports, (path, ports)


def test_the_old_spellings_remain_as_hidden_aliases():
    assert {"--metrics-port"} <= hidden_options(TREE[("monitor",)])
    assert {"--host", "--port"} <= hidden_options(TREE[("dashboard",)])
