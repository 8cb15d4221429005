"""What several ``ipledger`` commands parse alike: the group, the settings, shared options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from driver.config import Settings, SettingsError
from driver.domain.errors import IpamError
from driver.domain.pools import LOCAL_SPACE, SPACES
from driver.domain.text import shown

DB_HELP = "SQLAlchemy database URL [IPLEDGER_DB; default sqlite:////var/lib/ipledger/ipledger.db]"


class Group(click.Group):
    """``ipledger``'s command group: every error a command ends with is printed as one line
    without passwords (:func:`driver.domain.text.shown`), whatever it names."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as e:
            e.message = shown(e.message)  # type: ignore[misc]  # escaped in place, kept whole
            raise
        except SystemExit as e:
            if isinstance(e.code, str):
                raise SystemExit(shown(e.code)) from None
            raise


def settings_from_env(**overrides: Any) -> Settings:
    """The settings, or a clean exit naming the setting that does not parse.

    ``--db`` may come before the subcommand (``ipledger --db URL pools``) or after it.
    """
    context = click.get_current_context(silent=True)
    root = context.find_root().obj if context is not None else None
    if overrides.get("db_url") is None and isinstance(root, dict):
        overrides["db_url"] = root.get("db_url")
    try:
        return Settings.from_env(**overrides)
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


def seconds(text: str, what: str) -> int:
    """An age option with its unit (``45s``, ``15m``, ``12h``, ``7d``) in seconds, or a clean
    exit; a bare number is refused, naming the fix."""
    from driver.domain.addresses import parse_age

    try:
        return parse_age(text, what)
    except IpamError as e:
        raise click.ClickException(e.message) from None


def db_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--db", "db_url", help=DB_HELP)(command)


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        command
    )


def space_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--space",
        type=click.Choice(SPACES),
        default=LOCAL_SPACE,
        show_default=True,
        help="Address space of the network.",
    )(command)


def shared_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--shared", is_flag=True, help="In a shared pool (ipledger.shared), for every host."
    )(command)
