"""One registry class for everything built by name: backbones, event representations, heads.

A :class:`Registry` holds classes (never factory functions): a class registers under its
``__name__`` (or a given name), its typed constructor is its config, and the registry checks
options against that signature, so a typo fails with the accepted options instead of deep inside
a constructor. Its :meth:`~Registry.resolve` is the allow-list for reading configs and
checkpoints: it only looks names up among registered classes and never imports a module named by
its argument, so a checkpoint cannot run code by naming one.

A config refers to a registered class by a *spec*, the plain dict jsonargparse also reads and
writes: ``{"class_path": "visrep.models.backbones.cnn.small_cnn", "init_args": {...}}``.

It lives at the bottom of the flow (DESIGN.md) because every stage registers something:
``events`` its representations, ``models`` its backbones.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import torch  # noqa: F401  (doctest)

from visrep.errors import ConfigError

__all__ = ["Registry"]


def _plain(value: Any) -> Any:
    # Specs hold plain values (YAML- and weights_only-safe): tuples become lists.
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


T = TypeVar("T")


class Registry(Generic[T]):
    """Classes of one kind (subclasses of ``base``), by name.

    Args:
        kind: what the classes are, for messages ("backbone").
        base: the base class every registered class derives from.
        leading: names of the leading constructor parameters, supplied by the caller of
            :meth:`create` / :meth:`build` rather than by the config (for backbones
            ``in_chans, num_classes, img_size``); checked at registration.
        loader: called once before the first lookup, to import the modules that register the
            built-in classes (lazily, to avoid import cycles).
        name_options: name prefixes that carry an option: with ``{"timm": "model_name"}``, the
            name ``"timm/convnext_atto"`` means class ``timm`` with ``model_name="convnext_atto"``.

    >>> class Op(torch.nn.Module): ...
    >>> ops = Registry("op", Op, leading=("dim",))
    >>> @ops.register
    ... class scale(Op):
    ...     def __init__(self, dim: int, factor: float = 2.0) -> None:
    ...         super().__init__()
    ...         self.factor = factor
    >>> ops.names(), list(ops.options("scale"))
    (['scale'], ['factor'])
    >>> ops.build({"class_path": "scale", "init_args": {"factor": 3.0}}, 4).factor
    3.0
    """

    def __init__(
        self,
        kind: str,
        base: type[T],
        leading: tuple[str, ...] = (),
        loader: Callable[[], object] | None = None,
        name_options: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.base = base
        self.leading = tuple(leading)
        self._loader = loader
        self._name_options = dict(name_options or {})
        self._classes: dict[str, type[T]] = {}

    # -- registration ----------------------------------------------------------------------------
    def register(self, cls: type[T] | None = None, *, name: str | None = None) -> Any:
        """Register ``cls`` under ``name`` (default ``cls.__name__``): ``@registry.register`` or
        ``@registry.register(name="count")``.

        Raises:
            TypeError: ``cls`` is not a subclass of ``base``, its constructor does not start with
                the leading parameters, or takes ``*args`` / ``**kwargs``.
            ValueError: the name is taken.
        """
        if cls is None:
            return functools.partial(self.register, name=name)
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"a {self.kind} must subclass {self.base.__name__}, got {cls!r}")
        name = name or cls.__name__
        if name in self._classes:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        params = list(inspect.signature(cls).parameters.values())
        head = tuple(p.name for p in params[: len(self.leading)])
        if head != self.leading:
            raise TypeError(
                f"{self.kind} {name!r}: the constructor must start with {self.leading}, got {head}"
            )
        variadic = [p.name for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if variadic:
            raise TypeError(f"{self.kind} {name!r}: typed options only, no *{variadic[0]}")
        self._classes[name] = cls
        return cls

    def _ensure_loaded(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader()

    # -- lookups ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._ensure_loaded()
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        """The class registered as ``name`` (a ``ConfigError`` with close matches otherwise)."""
        self._ensure_loaded()
        if isinstance(name, str) and name in self._classes:
            return self._classes[name]
        close = difflib.get_close_matches(str(name), self._classes, n=3, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else f"known: {', '.join(sorted(self._classes))}"
        )
        raise ConfigError(f"unknown {self.kind} {name!r}; {hint}")

    def path(self, cls: type) -> str:
        """The full import path of ``cls`` (a spec's ``class_path``)."""
        return f"{cls.__module__}.{cls.__qualname__}"

    def resolve(self, class_path: str) -> type[T]:
        """The registered class that ``class_path`` names: a registered name or an import path.

        An import path is accepted only when it names a registered class: its own module path,
        or a module already imported that exposes that very class. Nothing is ever imported
        here, so a config or checkpoint naming an arbitrary module (``os.system``) is refused
        without running anything.
        """
        if not isinstance(class_path, str) or not class_path:
            raise ConfigError(
                f"{self.kind} class_path must be a non-empty string, got {class_path!r}"
            )
        if "." not in class_path:
            return self.get(class_path)
        self._ensure_loaded()
        module, _, attr = class_path.rpartition(".")
        for cls in self._classes.values():
            if cls.__name__ != attr:
                continue
            loaded = sys.modules.get(module)
            if self.path(cls) == class_path or getattr(loaded, attr, None) is cls:
                return cls
        raise ConfigError(
            f"{self.kind} class_path {class_path!r} is not a registered {self.kind}; "
            f"registered: {', '.join(sorted(self._classes))}"
        )

    def _lookup(self, name: str) -> tuple[type[T], dict[str, Any]]:
        # A name, "prefix/value" (an option in the name) or an import path.
        if isinstance(name, str) and "/" in name:
            prefix, _, value = name.partition("/")
            if prefix in self._name_options and value:
                return self.get(prefix), {self._name_options[prefix]: value}
        if isinstance(name, str) and "." in name:
            return self.resolve(name), {}
        return self.get(name), {}

    def options(self, name: str) -> dict[str, inspect.Parameter]:
        """The class's own keyword options (beyond the leading arguments), in signature order."""
        cls, fixed = self._lookup(name)
        return self._options(cls, fixed)

    def _options(
        self, cls: type, fixed: Mapping[str, Any] | None = None
    ) -> dict[str, inspect.Parameter]:
        params = list(inspect.signature(cls).parameters.values())[len(self.leading) :]
        return {p.name: p for p in params if p.name not in (fixed or {})}

    def _check(self, cls: type, options: Mapping[str, Any]) -> None:
        accepted = self._options(cls)
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(
                f"{self.kind} {cls.__name__!r} has no option(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(accepted) or 'none'}"
            )
        missing = [n for n, p in accepted.items() if p.default is p.empty and n not in options]
        if missing:
            raise ConfigError(f"{self.kind} {cls.__name__!r} needs option(s) {', '.join(missing)}")

    # -- building --------------------------------------------------------------------------------
    def create(self, name: str, *leading: Any, **options: Any) -> T:
        """Build ``name`` with the leading arguments and its options (checked against its signature).

        ``name`` is a registered name, ``"prefix/value"`` for a prefix of ``name_options``, or an
        import path accepted by :meth:`resolve`.
        """
        cls, fixed = self._lookup(name)
        options = {**fixed, **options}
        self._check(cls, options)
        return cls(*leading, **options)

    def spec(self, obj: Any) -> dict[str, Any]:
        """The plain ``{"class_path": ..., "init_args": {...}}`` of ``obj``, validated.

        ``obj`` is a registered name (or ``"prefix/value"``), such a dict (short or full
        ``class_path``), a registered class, or a ``functools.partial`` of one: a standard
        ``partial(cls, **options)`` or jsonargparse's instantiation partial, which holds the
        class in its ``args``.
        """
        if isinstance(obj, str):
            cls, init = self._lookup(obj)
        elif isinstance(obj, Mapping):
            extra = sorted(set(obj) - {"class_path", "init_args"})
            if extra or "class_path" not in obj:
                raise ConfigError(
                    f"a {self.kind} spec has the keys class_path and init_args, got {sorted(obj)}"
                )
            cls, init = self._lookup(obj["class_path"])
            args = obj.get("init_args") or {}
            if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
                raise ConfigError(f"{self.kind} init_args must be a mapping of option names")
            init = {**init, **args}
        elif isinstance(obj, type):
            cls, init = self._registered(obj), {}
        elif isinstance(obj, functools.partial):
            cls, init = self._from_partial(obj), dict(obj.keywords)
        else:
            raise ConfigError(
                f"a {self.kind} must be a name, a {{class_path, init_args}} dict, a registered "
                f"class or a partial of one; got {type(obj).__name__}"
            )
        self._check(cls, init)
        return {"class_path": self.path(cls), "init_args": _plain(init)}

    def _registered(self, cls: Any) -> type[T]:
        self._ensure_loaded()
        found = cls if any(c is cls for c in self._classes.values()) else None
        if found is None:
            raise ConfigError(f"{cls!r} is not a registered {self.kind}; see {self.names()}")
        return found

    def _from_partial(self, p: functools.partial) -> type[T]:
        classes = [a for a in (p.func, *p.args) if isinstance(a, type)]
        if len(classes) != 1:
            raise ConfigError(f"{p!r} is not a partial of a registered {self.kind}")
        cls = self._registered(classes[0])
        # partial(cls, **options), or jsonargparse's partial(instantiate, ..., cls, **options);
        # positional arguments after the class would bind leading arguments, which a spec lacks.
        if (p.func is cls and p.args) or (p.func is not cls and p.args[-1] is not cls):
            raise ConfigError(f"a {self.kind} partial may bind options by keyword only, got {p!r}")
        return cls

    def build(self, spec: Any, *leading: Any) -> T:
        """An instance from a spec (anything :meth:`spec` accepts) and the leading arguments."""
        s = self.spec(spec)
        return self.resolve(s["class_path"])(*leading, **s["init_args"])
