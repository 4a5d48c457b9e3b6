"""Shipped experiment configs, addressable by name (``visrep fit --config quickstart``)."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).parent


def list_configs() -> list[str]:
    """Names of the shipped configs."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(name_or_path: str) -> str | None:
    """A config file path for ``name_or_path``: an existing file, or a shipped config's name."""
    if Path(name_or_path).is_file():
        return name_or_path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return str(shipped)
    return None
