"""Using a trained model: the policy of any weight vector, to generate with or to export as a plain model.

* :func:`load_policy` -- a folder written by ``moalign train <method>`` as a :class:`LoadedPolicy` with
  ``.objectives``, ``.method`` and ``.generate(prompts, weights=...)`` (``moalign generate``);
* :func:`export_policy` / ``LoadedPolicy.export`` -- one weight vector's policy as a standard transformers
  folder (``moalign export``);
* :mod:`moalign.inference.families` -- the per-method policy families and their registry.

See docs/use_your_model.md.
"""

from moalign.inference.export import export_policy
from moalign.inference.policy import LoadedPolicy, load_policy
from moalign.inference.weights import check_weights, parse_weights

__all__ = ["LoadedPolicy", "load_policy", "export_policy", "check_weights", "parse_weights"]
