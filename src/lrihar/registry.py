"""A tiny timm-style registry: ``register`` a factory under a name, ``create`` it, ``names`` lists."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from lrihar.errors import BadInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps backend names to factories.

    Example:
        >>> detectors = Registry("detector")
        >>> @detectors.register("null")
        ... def make_null(**cfg): ...
        >>> detectors.names()
        ['null']
    """

    def __init__(self, kind: str, builtin_modules: Sequence[str] = ()) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        # Modules that register the built-in backends; imported on first lookup so that
        # importing the registry stays light.
        self._builtin_modules = tuple(builtin_modules)

    def _load_builtins(self) -> None:
        for module in self._builtin_modules:
            importlib.import_module(module)

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``."""

        def wrap(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return wrap

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load_builtins()
        return sorted(self._factories)

    def create(self, name: str, **config) -> T:
        """Build the backend ``name`` with ``config``; unknown names and options are bad input."""
        self._load_builtins()
        if name not in self._factories:
            raise BadInputError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        try:
            return self._factories[name](**config)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            raise BadInputError(f"{self.kind} {name!r}: {exc}") from exc
