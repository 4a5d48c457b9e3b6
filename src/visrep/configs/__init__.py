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


def read_config(path: str | Path) -> dict:
    """The options of a YAML config file, checked: valid YAML holding a mapping.

    Raises:
        ConfigError: the file is unreadable, not YAML, empty, or not a mapping of options;
            the message names the file (and the line of a syntax error).
    """
    import yaml

    from visrep.errors import ConfigError

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as e:
        raise ConfigError(f"config {str(p)!r} cannot be read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {str(p)!r} is not a text file") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"config {str(p)!r} is not valid YAML{where}: {problem}") from e
    if data is None:
        raise ConfigError(f"config {str(p)!r} is empty; expected a mapping of options")
    if not isinstance(data, dict):
        raise ConfigError(
            f"config {str(p)!r} must be a mapping of options (key: value), got a "
            f"{type(data).__name__}"
        )
    return data
