"""One way to look things up by name (models, selection strategies, QM engines): ``register`` a value under a
name, ``get`` it back, ``names`` lists them. An unknown name raises :class:`UnknownName` listing the known ones, so
the CLI and the app show one kind of message for every menu. Core module: standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from mlipdiv.errors import UnknownName

__all__ = ["Registry", "UnknownName"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> values, in registration order.

    Args:
        kind: what the names are, for messages ("model", "strategy", "QM engine").
        normalize: applied to a name before lookup and registration (e.g. ``str.lower``).
        loader: called with an unknown name before giving up; may register it (lazy imports of heavy modules).
    """

    def __init__(self, kind: str, normalize: Callable[[str], str] | None = None,
                 loader: Callable[[str], None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._normalize = normalize or (lambda name: name)
        self._loader = loader

    def register(self, name: str, value: T) -> T:
        """Make ``value`` available as ``name`` (a later registration under the same name replaces it)."""
        self._items[self._normalize(name)] = value
        return value

    def get(self, name: str) -> T:
        """The value registered as ``name``; :class:`UnknownName` (listing the known names) if there is none."""
        key = self._normalize(name) if isinstance(name, str) else name
        if key not in self._items and self._loader is not None and isinstance(key, str):
            self._loader(key)
        try:
            return self._items[key]
        except (KeyError, TypeError):
            raise UnknownName(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._normalize(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def values(self) -> list[T]:
        return list(self._items.values())
