"""What every command-line module needs: the settings and the store, with errors as click messages."""

from __future__ import annotations

from typing import Any

import click

from .config import Config, ensure_secret, load_config
from .errors import ConfigError


def cli_config(ctx: click.Context) -> Config:
    """The resolved settings (``--config`` file and MAILTRACK_* variables), a secret key ensured."""
    try:
        return ensure_secret(load_config(file=(ctx.obj or {}).get("config_file")))
    except ConfigError as e:
        raise click.ClickException(str(e)) from e


def cli_store(config: Config) -> Any:
    """The store, opened (and migrated) for a command."""
    from .store.db import open_store

    try:
        return open_store(config.database_url)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
