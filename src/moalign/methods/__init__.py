"""The training methods, one package each (``moalign/methods/<name>/``), and their registry.

Each package holds the method's config and trainer, its tabular version on the toy problem, its policy family
and, in ``__init__.py``, its one registration (:class:`~moalign.methods.spec.TrainingMethod`). Shared commands
read the registry (:mod:`moalign.methods.registry`) and never name a method. See docs/adding_a_method.md.
"""
