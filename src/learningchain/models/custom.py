"""Models a user brings: any ``torch.nn.Module`` factory named by import path.

``--model package.module:factory`` (with ``model_args``, the factory's keyword
arguments) names a callable that returns an ``nn.Module``. Genesis records the
spec that rebuilds it::

    {"kind": "import", "factory": "package.module:factory", "args": {...},
     "inputs": D, "input_shape": [C, H, W], "classes": K, "loss": "cross-entropy",
     "params": d, "shapes": "<sha256 of the flat list of parameter shapes>"}

The chain stores examples as flat rows of ``inputs`` features; the module built
here reshapes each batch to ``(B, *input_shape)`` before the user's forward.
The loss follows from the model's output width: one logit with two classes is
binary cross-entropy on the logit, ``classes`` logits is the multi-class
cross-entropy; anything else is refused.

A factory is code: importing it runs its module. A run names the factory its
user typed; ``chain verify`` imports the one a stored genesis names only when
asked to (``--trust-model-code``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import re
import sys
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["IMPORT_KIND", "ImportedModel", "build_imported", "check_factory_path", "check_model_args",
           "check_recorded_model", "factory_path_of", "imported_spec", "is_factory_path", "load_factory",
           "shapes_hash"]

IMPORT_KIND = "import"
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_PATH = re.compile(rf"^({_DOTTED}):({_DOTTED})$")


def is_factory_path(name) -> bool:
    """A model or data name of the form ``package.module:attribute`` (not a registry name)."""
    return isinstance(name, str) and ":" in name


def check_factory_path(path: str, what: str = "model") -> tuple[str, str]:
    """(module, attribute) of ``package.module:factory``; a malformed path is a ConfigError."""
    match = _PATH.match(path) if isinstance(path, str) else None
    if match is None:
        raise ConfigError(f"{what} {path!r} is not an import path: expected package.module:factory "
                          "(dotted Python names, one colon)")
    return match.group(1), match.group(2)


def _with_working_directory() -> None:
    """The working directory on the import path, last (as ``python -m`` has it first),
    so a module beside the user is found but never shadows an installed one."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)


def load_factory(path: str, what: str = "model") -> Callable:
    """The callable ``path`` names, imported; every failure is a ConfigError that says which step failed."""
    module_name, attr = check_factory_path(path, what)
    _with_working_directory()
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{what} factory {path!r}: cannot import module {module_name!r} ({exc}); "
                          "is its package installed or on PYTHONPATH?") from None
    except Exception as exc:  # the module's own code failed while importing
        raise ConfigError(f"{what} factory {path!r}: importing {module_name!r} failed: "
                          f"{type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what} factory {path!r}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ConfigError(f"{what} factory {path!r} is a {type(obj).__name__}, not a callable")
    return obj


def factory_path_of(fn: Callable) -> str:
    """The import path of a module-level callable, checked to name that same object
    (a lambda, a nested function or one defined in ``__main__`` cannot be rebuilt)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise ConfigError(f"model factory {fn!r} cannot be named by an import path: define it at the top level "
                          "of an importable module (not a lambda, a nested function or __main__), so that "
                          "genesis can record it and `chain verify` rebuild it")
    path = f"{module}:{qualname}"
    if load_factory(path) is not fn:
        raise ConfigError(f"model factory {path!r} does not name the callable given")
    return path


def check_model_args(args, path: str = "") -> dict:
    """The factory's keyword arguments: a table of finite JSON values (genesis hashes them)."""
    if not isinstance(args, dict):
        raise ConfigError(f"model_args must be a table of keyword arguments, got {type(args).__name__}")
    for name in args:
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"model_args: {name!r} is not a keyword argument name")
    try:
        json.dumps(args, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model_args{' of ' + path if path else ''} must be plain values (numbers, strings, "
                          f"booleans, lists, tables; finite): {exc}") from None
    return args


def shapes_hash(model: nn.Module) -> str:
    """sha256 of the flat list of parameter shapes, in ``model.parameters()`` order."""
    shapes = [list(p.shape) for p in model.parameters()]
    return hashlib.sha256(json.dumps(shapes, separators=(",", ":")).encode()).hexdigest()


def _call(path: str, args: dict) -> nn.Module:
    fn = load_factory(path)
    try:
        model = fn(**args)
    except TypeError as exc:
        raise ConfigError(f"model factory {path!r} does not take the arguments {args}: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"model factory {path!r} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {path!r} returned {type(model).__name__}, not a torch.nn.Module")
    _check_module(model, path)
    return model


def _check_module(model: nn.Module, path: str) -> None:
    """What the chain needs of a module: float, trainable parameters and no state besides them."""
    params = list(model.named_parameters())
    if not params:
        raise ConfigError(f"model factory {path!r} built a module with no parameters: nothing to train")
    for name, p in params:
        if not p.is_floating_point():
            raise ConfigError(f"model factory {path!r}: parameter {name!r} is {p.dtype}, not a float tensor "
                              "(the chain carries real-valued weights)")
        if not p.requires_grad:
            raise ConfigError(f"model factory {path!r}: parameter {name!r} is frozen (requires_grad=False); "
                              "every parameter is trained on the chain")
        if not bool(torch.isfinite(p.detach()).all()):
            raise ConfigError(f"model factory {path!r}: parameter {name!r} holds NaN or infinity")
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        raise ConfigError(f"model factory {path!r}: the module has buffers ({', '.join(buffers[:3])}): the chain "
                          "carries parameters only, so state such as BatchNorm running statistics would differ "
                          "between parties (use track_running_stats=False, GroupNorm or LayerNorm)")


class ImportedModel(nn.Module):
    """A user's module behind a reshape: flat rows of the chain's data to ``(B, *input_shape)``."""

    def __init__(self, net: nn.Module, input_shape):
        super().__init__()
        self.net = net
        self.input_shape = tuple(int(s) for s in input_shape)

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], *self.input_shape))


def build_imported(spec: dict) -> nn.Module:
    """The module ``spec`` records, rebuilt; refused when the code now builds another shape."""
    path = spec.get("factory")
    args = check_model_args(spec.get("args", {}), path or "")
    shape = spec.get("input_shape")
    if not isinstance(path, str) or not isinstance(shape, list) or not all(
            isinstance(s, int) and s >= 1 for s in shape):
        raise ConfigError(f"model spec {spec!r} has no factory or input shape")
    net = _call(path, args)
    count = sum(p.numel() for p in net.parameters())
    digest = shapes_hash(net)
    if "params" in spec and (count != spec["params"] or digest != spec.get("shapes")):
        raise ConfigError(f"model factory {path!r} with {args} now builds {count} parameters (shape hash "
                          f"{digest[:16]}), genesis records {spec['params']} (shape hash "
                          f"{str(spec.get('shapes'))[:16]}): the code differs from the one that made the chain")
    return ImportedModel(net, shape)


def imported_spec(path: str, args: dict, *, input_shape, classes: int) -> dict:
    """The genesis spec of factory ``path`` on data of ``input_shape`` and ``classes``
    classes, after a forward pass that fixes the loss from the output width."""
    check_factory_path(path)
    args = check_model_args(args, path)
    shape = [int(s) for s in input_shape]
    inputs = math.prod(shape)
    spec = {"kind": IMPORT_KIND, "factory": path, "args": args, "inputs": inputs, "input_shape": shape,
            "classes": int(classes)}
    with torch.random.fork_rng(devices=[]):  # building and probing leave the caller's generator alone
        model = build_imported(spec)
        try:
            with torch.no_grad():
                out = model(torch.zeros(2, inputs))
        except Exception as exc:
            raise ConfigError(f"model factory {path!r} cannot take examples of shape {tuple(shape)}: "
                              f"{type(exc).__name__}: {exc}") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model factory {path!r}: a batch of 2 examples gives {got}; the model must return "
                          "logits of shape (batch, outputs)")
    width = int(out.shape[1])
    if width == 1 and classes == 2:
        loss = "binary"
    elif width == classes:
        loss = "cross-entropy"
    else:
        raise ConfigError(f"model factory {path!r} returns {width} logits per example, the data has {classes} "
                          f"classes: it must return {classes} logits (multi-class cross-entropy)"
                          + (" or 1 (binary cross-entropy)" if classes == 2 else ""))
    spec.update(loss=loss, params=sum(p.numel() for p in model.parameters()), shapes=shapes_hash(model))
    return spec


def check_recorded_model(spec: dict, dim: int, *, trust_code: Optional[str]) -> str:
    """For ``chain verify``: rebuild the user model a genesis records and check it
    has the chain's ``dim`` parameters and the recorded shape hash. Returns what was
    left unchecked, in words ("" when nothing); a model that cannot be rebuilt, or
    builds another shape, is a ConfigError. Built-in models need no code: "".
    Importing a factory runs its module's code, so it is done only when ``trust_code``
    names that very factory (a hostile genesis could name any installed function)."""
    if not isinstance(spec, dict) or spec.get("kind") != IMPORT_KIND:
        return ""
    path = spec.get("factory")
    if not trust_code:
        return (f"the model factory {path!r} named in genesis was not rebuilt (that imports and runs its code: "
                f"pass --trust-model-code {path} if you trust it)")
    if not isinstance(trust_code, str) or trust_code != path:
        raise ConfigError(f"genesis names model factory {path!r}, not the {trust_code!r} you trust: nothing was "
                          "imported")
    if not isinstance(spec.get("params"), int) or not isinstance(spec.get("shapes"), str):
        raise ConfigError(f"genesis names model factory {path!r} without its parameter count and shape hash")
    model = build_imported(spec)
    count = sum(p.numel() for p in model.parameters())
    if count != dim:
        raise ConfigError(f"model factory {path!r} builds {count} parameters, the chain's models have {dim}")
    return ""
