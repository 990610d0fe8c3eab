"""`moalign.core` names stay what they are after every submodule has been imported.

A submodule named like a function exported by the package replaces that function as the package
attribute once it is imported (``import moalign.core.<name>`` sets ``moalign.core.<name>``).
"""

from __future__ import annotations

import importlib
import pkgutil

import moalign.core


def test_exported_names_are_not_shadowed_by_submodules():
    for info in pkgutil.iter_modules(moalign.core.__path__):
        importlib.import_module(f"moalign.core.{info.name}")
    for name in moalign.core.__all__:
        assert callable(getattr(moalign.core, name)) or not isinstance(getattr(moalign.core, name), type(moalign)), \
            f"moalign.core.{name} is a module, not the exported object"
    assert callable(moalign.core.hypervolume)
