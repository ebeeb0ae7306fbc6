"""Named registries (timm-style): parts are looked up by name from one registry each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from selfnas.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to factories. Registering a name twice is an error.

    >>> backbones = Registry("backbone")
    >>> @backbones.register("tiny")
    ... def tiny(): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str | None = None) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, help)
            return obj

        return decorator

    def add(self, name: str, obj: T, help: str | None = None) -> None:
        if name in self._items:
            raise RegistryError(f"duplicate {self.kind} name {name!r}")
        self._items[name] = obj
        doc = help if help is not None else (getattr(obj, "__doc__", None) or "")
        self._help[name] = doc.strip().splitlines()[0] if doc.strip() else ""

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise RegistryError(f"unknown {self.kind} {name!r}; choose one of: {known}") from None

    def describe(self, name: str) -> str:
        self.get(name)
        return self._help[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
