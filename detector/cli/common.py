"""What every command shares: the consoles, the --config option, errors that exit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console

if TYPE_CHECKING:
    from detector.config import VigilConfig

out = Console() if sys.stdout.isatty() else Console(width=160)  # tables stay readable in logs
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (VIGIL_* env overrides it)")
]


def load_or_exit(path: Path | None) -> VigilConfig:
    from detector.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def choose(kind: str, value: str, choices: list[str]) -> None:
    """Exit with a clear error unless `value` is one of `choices`."""
    if value not in choices:
        err.print(f"[red]error:[/red] unknown {kind} {value!r}; choose from {', '.join(choices)}")
        raise typer.Exit(2)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as indented JSON, atomically (a script never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(path)
