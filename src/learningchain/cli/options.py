"""Command-line options generated from the configuration's declarations: each
key's option, type, help line and default come from its field in
:mod:`learningchain.config`, so nothing here repeats a key or a default."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from ..config import DATASET_DEFAULTS, KNOWN, field_type, known_names
from ..config.schema import toml_scalar
from ..errors import ConfigError

__all__ = ["add_config_options", "config_values", "option_group", "option_name", "per_dataset", "help_line"]


def per_dataset(key: str) -> str:
    """The per-dataset default of ``key`` for a help line: "default per dataset: 200 synthetic, 300 others"."""
    groups: dict = {}
    for name, values in DATASET_DEFAULTS.items():
        if name != "user":  # a user's own data (--data): said last
            groups.setdefault(values[key], []).append(name)
    parts = [f"{v:g} {' and '.join(names)}" if i == 0 or len(groups) > 2 else f"{v:g} others"
             for i, (v, names) in enumerate(groups.items())]
    if "user" in DATASET_DEFAULTS:
        parts.append(f"{DATASET_DEFAULTS['user'][key]:g} with --data")
    return "default per dataset: " + ", ".join(parts)


def option_name(f) -> str:
    """The option of field ``f``: its ``flag`` or ``--`` and the key with dashes."""
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def _default_text(f) -> str:
    meta = f.metadata
    if meta["default_help"] is not None:
        return f"default: {meta['default_help']}"
    if f.name in next(iter(DATASET_DEFAULTS.values())):
        return per_dataset(f.name)
    default = f.default_factory() if f.default is MISSING else f.default
    if default is None or isinstance(default, bool):
        return ""
    return f"default {default:g}" if isinstance(default, float) else f"default {default}"


def help_line(f) -> str:
    """The help of field ``f``: its text, the names it takes (unless the text names
    them all already) and its default."""
    text = f.metadata["help"]
    if f.name in KNOWN and not all(name in text for name in KNOWN[f.name]):
        text += f": {known_names(f.name)}"
    default = _default_text(f)
    return f"{text} ({default})" if default else text


def add_config_options(parser: argparse.ArgumentParser, cls, command: str, *, title=None) -> list:
    """Add an option for every key of ``cls`` that ``command`` takes; returns their keys.
    Options go to the groups named by the keys' ``group`` (or all to ``title``)."""
    added = []
    for f in fields(cls):
        if command not in f.metadata["option"]:
            continue
        _add_option(option_group(parser, title or f.metadata["group"]), cls, f)
        added.append(f.name)
    return added


def option_group(parser: argparse.ArgumentParser, title: str):
    """The parser's option group ``title``, made on first use (one heading, however many callers)."""
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def _add_option(group, cls, f) -> None:
    tp = field_type(cls, f.name)
    kwargs = {"dest": f.name, "help": help_line(f)}
    if tp is bool:
        default = f.default
        kwargs.update(action="store_const", const=not default if f.metadata["flag"] else True)
    elif tp in (int, float, str):
        kwargs.update(type=tp)
        if f.metadata["metavar"]:
            kwargs["metavar"] = f.metadata["metavar"]
    elif tp is dict and f.metadata["flag"]:  # a table set entry by entry: --model-arg KEY=VALUE, repeatable
        kwargs.update(action="append", metavar="KEY=VALUE")
    else:  # pragma: no cover - a declaration error: tables and lists are set with --set or TOML
        raise TypeError(f"{f.name}: a {tp!r} key cannot be a command-line option")
    group.add_argument(option_name(f), **kwargs)


def config_values(args, cls, command: str) -> dict:
    """The keys of ``cls`` given as options of ``command`` (an option left out is not a key given)."""
    out = {}
    for f in fields(cls):
        if command in f.metadata["option"]:
            value = getattr(args, f.name, None)
            if value is not None:
                out[f.name] = _table(value, option_name(f)) if field_type(cls, f.name) is dict else value
    return out


def _table(items: list, option: str) -> dict:
    """``KEY=VALUE`` entries of a table option, each value a TOML scalar (bare words are strings)."""
    table: dict = {}
    for item in items:
        name, eq, raw = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ConfigError(f"{option} expects KEY=VALUE, got {item!r}")
        if name in table:
            raise ConfigError(f"{option} sets {name!r} twice")
        table[name] = toml_scalar(raw)
    return table
