"""How a configuration key is declared and type-checked.

Every key is a dataclass field declared with :func:`key`: its type (the
annotation), its default, its help line and where it belongs are written once,
and the checks, the TOML readers and the command-line options are derived from
them."""

from __future__ import annotations

import functools
import sys
from dataclasses import MISSING, field, fields
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..errors import ConfigError

__all__ = ["key", "check_types", "field_type", "read_toml", "kind_of", "SECTIONS"]

#: What each section of the configuration holds.
SECTIONS = {
    "problem": "the learning problem: data, model, parties, aggregation, privacy (hashed into genesis)",
    "chain": "consensus and genesis keys (every node of one chain must agree)",
    "network": "a node's local policy: limits, timeouts, when to mine",
    "backend": "where the chain runs: the native chain or an Ethereum node",
    "run": "one run's output and reporting (not part of the chain)",
}


def key(default: Any = MISSING, *, help: str, section: str, group: Optional[str] = None,
        factory: Any = MISSING, option: tuple = (), flag: Optional[str] = None, metavar: Optional[str] = None,
        default_help: Optional[str] = None, honoured_by: tuple = ("train", "ethereum", "network")):
    """A configuration field.

    ``help`` is the key's one help line (without its default, which is derived);
    ``section`` one of :data:`SECTIONS`; ``group`` the heading of its command-line
    option; ``option`` the commands that take it as an option (``train``, ``chain``:
    node and network up, ``node``: node only), others reach it through ``--set`` and
    TOML; ``flag`` a bare switch's name (``--no-keep-chain`` sets the opposite of the
    default); ``default_help`` the default in words where the literal says nothing
    (``None`` meaning "per data set"); ``honoured_by`` the runs that use the key
    (``train``: the in-process native run, ``ethereum``: a run on the Ethereum
    backend, ``network``: node processes); a run refuses a
    key it would ignore when it is given another value than its default."""
    if section not in SECTIONS:  # pragma: no cover - a declaration error
        raise ValueError(f"unknown section {section!r}")
    meta = {"help": help, "section": section, "group": group or section, "option": tuple(option), "flag": flag,
            "metavar": metavar, "default_help": default_help, "honoured_by": tuple(honoured_by)}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def kind_of(value) -> str:
    """How a value reads to a user: 'a string', 'a boolean', ..."""
    if value is None:
        return "nothing"
    for tp, word in ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
                     (dict, "a table"), ((list, tuple), "a list")):
        if isinstance(value, tp):
            return word
    return f"a {type(value).__name__}"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expected(tp) -> tuple[str, Any]:
    """(what a value of type ``tp`` must be, a predicate) for the types config fields use."""
    if tp is bool:
        return "true or false", lambda v: isinstance(v, bool)
    if tp is int:
        return "an integer", _is_int
    if tp is float:
        return "a number", lambda v: _is_int(v) or isinstance(v, float)
    if tp is str:
        return "a string", lambda v: isinstance(v, str)
    if tp is dict or get_origin(tp) is dict:
        return "a table", lambda v: isinstance(v, dict)
    if tp is tuple or get_origin(tp) is tuple:
        args = get_args(tp)
        if args and args[-1] is Ellipsis:
            what, ok = _expected(args[0])
            plural = {"an integer": "integers", "a string": "strings", "a number": "numbers",
                      "a table": "tables"}.get(what, what)
            return f"a list of {plural}", lambda v: isinstance(v, (list, tuple)) and all(ok(x) for x in v)
        return "a list", lambda v: isinstance(v, (list, tuple))
    if tp is object:
        return "a value", lambda v: True
    raise TypeError(f"no check for config type {tp!r}")  # pragma: no cover - a new field type needs one


def _check(tp):
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        what, ok = _check(args[0]) if len(args) == 1 else ("?", lambda v: False)
        return what, lambda v: v is None or ok(v)
    return _expected(tp)


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return get_type_hints(cls)


def check_types(cls, values: dict, where: str = "") -> None:
    """Refuse any value of ``values`` whose type is not its dataclass field's type
    (derived from the annotations of ``cls``), with a message naming the key, the
    value and the type expected: ``no_dp must be true or false, got 'false' (a string)``.
    Booleans are never numbers, integers are never booleans or floats, a float field
    takes an integer; an Optional field takes None."""
    hints = _hints(cls)
    for name, value in values.items():
        if name not in hints:
            continue
        what, ok = _check(hints[name])
        if not ok(value):
            raise ConfigError(f"{where}{name} must be {what}, got {value!r} ({kind_of(value)})")


def field_type(cls, name: str):
    """The annotation of field ``name`` of ``cls`` (Optional unwrapped), or None."""
    tp = _hints(cls).get(name)
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    return tp


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """A TOML file as a dict; a missing or malformed file is a ConfigError that names it."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def parse_toml_text(text: str, source: str) -> dict:
    """TOML text as a dict; malformed text is a ConfigError naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def toml_scalar(raw: str):
    """``raw`` read as a TOML value (number, boolean, string, array, inline table),
    or the bare text when it is not one."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def refuse_unknown(data: dict, cls, where: str, renamed: Optional[dict] = None) -> dict:
    """``data`` with ``-`` in keys read as ``_``; an unknown key is refused with the known ones."""
    known = {f.name for f in fields(cls)}
    clean = {}
    for name_as_given, value in data.items():
        name = name_as_given.replace("-", "_")
        if renamed and name in renamed:
            new, why = renamed[name]
            raise ConfigError(f"option {name_as_given!r} is now called {new!r}: {why}")
        if name not in known:
            raise ConfigError(f"unknown {where}option {name_as_given!r}; known: {', '.join(sorted(known))}")
        clean[name] = value
    return clean
