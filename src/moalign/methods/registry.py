"""The registry of methods: ``moalign train``, ``synthetic toy``, ``compare`` and ``load_policy`` read it.

A method is one package ``moalign/methods/<name>/`` whose ``__init__.py`` declares a
:class:`~moalign.methods.spec.TrainingMethod` and registers it with :func:`register_method`. The built-in
packages are listed once, in :data:`BUILTIN_METHODS`, and imported on the first look-up (their ``__init__``
imports no transformers). A method defined elsewhere registers itself with :func:`register_method`, or from
another installed package through the entry-point group ``moalign.methods`` (an entry point naming a
:class:`TrainingMethod`). docs/adding_a_method.md walks through it.
"""

from __future__ import annotations

import importlib

from moalign.methods.spec import CompareFacts, PolicyContext, ToyEntry, TrainingMethod, TuningGrid

__all__ = ["TrainingMethod", "ToyEntry", "CompareFacts", "PolicyContext", "TuningGrid", "BUILTIN_METHODS",
           "register_method", "unregister_method", "get_method", "available_methods", "methods_in_order"]

ENTRY_POINT_GROUP = "moalign.methods"

#: the built-in method packages (``moalign.methods.<name>``), one line each, in the order the toy and the
#: comparison run them
BUILTIN_METHODS = (
    "mopo",
    "ham",
    "sca",
    "ric",
    "mo_odpo",
    "p_morl",
    "rewarded_soups",
    "odpo_soups",
    "modpo",
)

_METHODS: dict[str, TrainingMethod] = {}
_LOADED = False


def register_method(method: TrainingMethod, replace: bool = False) -> TrainingMethod:
    """Make ``method`` available to every command; a second method of the same name is an error."""
    if not method.name or not method.name.replace("-", "_").isidentifier():
        raise ValueError(f"method name must be a word (letters, digits, _ or -), got {method.name!r}")
    if method.name in _METHODS and not replace:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Remove a registered method (tests, plugins reloading)."""
    _METHODS.pop(name, None)


def methods_in_order() -> dict[str, TrainingMethod]:
    """Registered methods by name: the built-in ones in :data:`BUILTIN_METHODS` order, then the others as
    registered. The toy and the comparison run methods in this order."""
    _load()
    return dict(_METHODS)


def available_methods() -> dict[str, TrainingMethod]:
    """Registered methods by name, sorted (what ``moalign train`` lists)."""
    return dict(sorted(methods_in_order().items()))


def get_method(name: str) -> TrainingMethod:
    """The registered method ``name``; unknown names list the known ones."""
    methods = available_methods()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(methods) or 'none'}")
    return methods[name]


def _load() -> None:
    """Import the built-in packages (each registers itself) and the entry points, once."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for name in BUILTIN_METHODS:
        importlib.import_module(f"moalign.methods.{name}")  # its __init__ registers it (once per process)
    builtin = {name: _METHODS[name] for name in BUILTIN_METHODS if name in _METHODS}
    others = {name: method for name, method in _METHODS.items() if name not in builtin}
    _METHODS.clear()
    _METHODS.update({**builtin, **others})
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        method = entry.load()
        if not isinstance(method, TrainingMethod):
            raise TypeError(f"entry point {entry.name!r} of {ENTRY_POINT_GROUP} must name a TrainingMethod, "
                            f"got {type(method).__name__}")
        register_method(method, replace=True)
