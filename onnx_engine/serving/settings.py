"""Settings declared once: each field of a frozen config dataclass says what it takes.

A field made with :func:`setting` carries its :class:`Kind` (which values are valid, how a
string spells one), its help, and its names: the CLI flag (``--max-batch-size``) and the key of
Ray's ``serve run`` arguments and config files (``max_batch_size``). From that one declaration
come the dataclass's validation (:func:`check_settings`), the CLI flags
(:func:`add_arguments`, :func:`from_arguments`) and the parsing of ``serve run``'s strings
(:func:`from_strings`), so a new setting is one field.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any

from engine.errors import InputError

_NONE_WORDS = ("none", "")


class Kind(ABC):
    """What values a setting takes; ``optional``: ``None`` too (spelled ``none`` or empty)."""

    optional: bool = False

    @abstractmethod
    def check(self, label: str, value: Any) -> None:
        """Raises InputError naming ``label`` when ``value`` is not one of this kind's."""

    def parse(self, key: str, text: str) -> Any:
        """The value a string spells (as ``serve run key=value`` passes it)."""
        return text

    def add_argument(self, parser: Any, flag: str, dest: str, default: Any, help: str,
                     metavar: str | None) -> None:
        parser.add_argument(flag, dest=dest, default=default, help=help, metavar=metavar)

    def adopt(self, key: str, value: Any) -> Any:
        """A value given as it is (by argparse, or a config file) in this kind's own type."""
        return value

    def _is_none(self, value: Any) -> bool:
        return self.optional and value is None


@dataclass(frozen=True)
class Number(Kind):
    """An integer or a number with a lower bound (``strict``: the bound itself is refused).

    ``phrase`` words the rule in messages (``"a positive integer"``); by default the bound
    (``"an integer >= 1"``, ``"> 0"``).
    """

    type: type = int
    low: float = 1
    strict: bool = False
    optional: bool = False
    phrase: str | None = None

    def check(self, label: str, value: Any) -> None:
        if self._is_none(value):
            return
        types = (int,) if self.type is int else (int, float)
        if (isinstance(value, bool) or not isinstance(value, types)
                or not (value > self.low if self.strict else value >= self.low)):
            raise InputError(f"{label} must be {self._rule()}, got {value!r}.")

    def _rule(self) -> str:
        if self.phrase:
            return self.phrase
        bound = f"{'>' if self.strict else '>='} {self.low:g}"
        return f"an integer {bound}" if self.type is int else bound

    def parse(self, key: str, text: str) -> Any:
        if self.optional and text.lower() in _NONE_WORDS:
            return None
        try:
            return self.type(text)
        except ValueError:
            raise InputError(f"{key} must be {self.type.__name__}, got {text!r}.") from None

    def add_argument(self, parser: Any, flag: str, dest: str, default: Any, help: str,
                     metavar: str | None) -> None:
        parser.add_argument(flag, dest=dest, type=self.type, default=default, help=help,
                            metavar=metavar)


@dataclass(frozen=True)
class Switch(Kind):
    """On or off: a CLI switch, ``true``/``false`` (or ``1``/``0``) as a string."""

    def check(self, label: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise InputError(f"{label} must be true or false, got {value!r}.")

    def parse(self, key: str, text: str) -> Any:
        if text.lower() not in ("true", "false", "1", "0"):
            raise InputError(f"{key} must be true or false, got {text!r}.")
        return text.lower() in ("true", "1")

    def add_argument(self, parser: Any, flag: str, dest: str, default: Any, help: str,
                     metavar: str | None) -> None:
        parser.add_argument(flag, dest=dest, action="store_true", help=help)


@dataclass(frozen=True)
class Text(Kind):
    """A non-blank string (``optional``: or ``None``)."""

    optional: bool = False

    def check(self, label: str, value: Any) -> None:
        if self._is_none(value):
            return
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{label} is empty; give a non-empty one or none at all.")


@dataclass(frozen=True)
class Texts(Kind):
    """Strings: a repeated CLI flag, comma-separated in a string."""

    def check(self, label: str, value: Any) -> None:
        if not isinstance(value, tuple) or not all(isinstance(item, str) for item in value):
            raise InputError(f"{label} must be a tuple of strings, got {value!r}.")

    def parse(self, key: str, text: str) -> Any:
        return tuple(part for part in text.split(",") if part)

    def add_argument(self, parser: Any, flag: str, dest: str, default: Any, help: str,
                     metavar: str | None) -> None:
        parser.add_argument(flag, dest=dest, action="append", default=[], help=help,
                            metavar=metavar)

    def adopt(self, key: str, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Parsed(Kind):
    """A value with its own spelling and rule: ``parse(key, text)`` and ``check(label, value)``
    functions (``MIN:MAX`` replicas, say); ``None`` when ``optional``."""

    parser: Callable[[str, str], Any]
    checker: Callable[[str, Any], None]
    optional: bool = False

    def check(self, label: str, value: Any) -> None:
        if not self._is_none(value):
            self.checker(label, value)

    def parse(self, key: str, text: str) -> Any:
        return self.parser(key, text)

    def adopt(self, key: str, value: Any) -> Any:
        return self.parser(key, value) if isinstance(value, str) else value


@dataclass(frozen=True)
class Setting:
    """A field's declaration; ``flag``: the CLI flag (``""``: none); ``key``: the ``serve run``
    key; ``label``: its name in messages; ``group``/``exclusive``: CLI argument groups."""

    kind: Kind
    help: str
    flag: str | None = None
    key: str | None = None
    label: str | None = None
    group: str | None = None
    exclusive: str | None = None
    metavar: str | None = None


def setting(default: Any, kind: Kind, help: str, **names: Any) -> Any:
    """A dataclass field declared once (``names``: :class:`Setting`'s flag, key, label, ...)."""
    return field(default=default, metadata={"setting": Setting(kind, help, **names)})


def _settings(cls: type) -> list[tuple[Field[Any], Setting]]:
    return [(item, item.metadata["setting"]) for item in fields(cls) if "setting" in item.metadata]


def _label(item: Field[Any], declared: Setting) -> str:
    return declared.label or item.name


def check_settings(config: Any) -> None:
    """Check each field of ``config`` by its kind (for ``__post_init__``).

    Raises:
        InputError: the first bad value, named.
    """
    for item, declared in _settings(type(config)):
        declared.kind.check(_label(item, declared), getattr(config, item.name))


def add_arguments(parser: argparse.ArgumentParser, cls: type,
                  groups: Mapping[str, Any] | None = None) -> None:
    """One CLI flag per field of ``cls`` with a flag, in the group its setting names."""
    exclusive: dict[str, Any] = {}
    for item, declared in _settings(cls):
        if declared.flag == "":
            continue
        target = (groups or {}).get(declared.group or "", parser)
        if declared.exclusive:
            if declared.exclusive not in exclusive:
                exclusive[declared.exclusive] = target.add_mutually_exclusive_group()
            target = exclusive[declared.exclusive]
        flag = declared.flag or f"--{item.name.replace('_', '-')}"
        declared.kind.add_argument(target, flag, item.name, item.default, declared.help,
                                   declared.metavar)


def from_arguments(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """``cls`` from the flags :func:`add_arguments` added (``given`` fields as they are)."""
    values = {item.name: declared.kind.adopt(item.name, getattr(args, item.name))
              for item, declared in _settings(cls) if declared.flag != ""}
    return cls(**{**values, **given})


def setting_keys(cls: type) -> dict[str, str]:
    """``serve run`` key -> field name for every setting of ``cls``."""
    return {declared.key or item.name: item.name for item, declared in _settings(cls)}


def from_strings(cls: type, values: Mapping[str, Any]) -> Any:
    """``cls`` from ``serve run`` keys; strings are parsed by their kind, other values (from a
    config file) adopted as they are.

    Raises:
        InputError: a string that does not spell a value, or a value its kind refuses.
    """
    declared = {declared.key or item.name: (item.name, declared.kind)
                for item, declared in _settings(cls)}
    given = {}
    for key, value in values.items():
        name, kind = declared[key]
        given[name] = kind.parse(key, value) if isinstance(value, str) else kind.adopt(key, value)
    return cls(**given)
