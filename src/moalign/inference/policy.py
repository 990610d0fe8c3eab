"""``load_policy(DIR)``: any folder trained by moalign as one object that answers prompts at a chosen weight.

    from moalign.inference import load_policy
    policy = load_policy("runs/demo/model")
    policy.objectives                      # ['positivity', 'conciseness']
    policy.generate(["Plan a rainy Sunday."], weights=[0.7, 0.3], max_new_tokens=48)
    policy.export([0.7, 0.3], "exported/")  # a plain transformers folder (moalign.inference.export)

The method-specific part -- how a weight vector becomes a policy -- is the folder's policy family
(:mod:`moalign.inference.families`); decoding is :func:`moalign.eval.generate.generate_completions`, the same code
the evaluation uses, so ``generate`` answers exactly as ``moalign eval`` scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moalign.inference.families import PolicyFamily, family_for

__all__ = ["LoadedPolicy", "load_policy"]


def _as_prompt_list(prompts: Any) -> list[Any]:
    """One prompt (a string or one chat conversation) or a sequence of prompts, as a list of prompts."""
    if isinstance(prompts, str):
        return [prompts]
    prompts = list(prompts)
    if prompts and isinstance(prompts[0], dict):  # one conversation [{"role", "content"}, ...]
        return [prompts]
    return prompts


class LoadedPolicy:
    """A trained folder's policies, one per weight vector; models load on first use.

    Attributes: ``method`` (the training method), ``objectives`` (the data's objectives), ``weight_names`` (what
    each weight refers to: the objectives, or for HaM and a MOPO model trained on a subset of objectives its
    heads), ``kind`` (the policy family: heads, soup, conditioned, per_weight), ``path``.
    """

    def __init__(self, family: PolicyFamily) -> None:
        self.family = family
        self.path: Path = family.folder.path
        self.method: str = family.folder.method
        self.objectives: list[str] = list(family.folder.objectives)
        self.kind: str = family.kind
        #: note on the last policy chosen (e.g. MODPO's nearest model, SCA's steered neighbours), or None
        self.last_note: str | None = None

    @property
    def weight_names(self) -> list[str]:
        return self.family.weight_names

    @property
    def tokenizer(self) -> Any:
        return self.family.tokenizer

    def check_weights(self, weights: Any) -> tuple[float, ...]:
        """``weights`` checked against the method (length, sign, simplex, grid); a ValueError says what is wrong."""
        return self.family.check(weights)

    def describe(self, weights: Any) -> str:
        """What the policy of ``weights`` is, in one line (e.g. which heads with which coefficients)."""
        return self.family.describe(self.check_weights(weights))

    def generation_settings(self, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                            seed: int = 0, batch_size: int = 32, precision: str = "auto") -> Any:
        """The :class:`~moalign.eval.generate.GenerationSettings` of a call: greedy at ``temperature`` 0;
        ``precision`` as everywhere in moalign (:mod:`moalign.precision`; ``fp32`` to compare with an export
        run in float32)."""
        from moalign.eval.generate import GenerationSettings

        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature}")
        return GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=temperature > 0,
                                  temperature=temperature if temperature > 0 else 1.0, top_p=top_p, seed=seed,
                                  use_chat_template=self.family.use_chat_template, progress=False,
                                  precision=precision)

    def _target(self, weights: Any, divergence: str | None) -> tuple[Any, tuple[float, ...]]:
        w = self.check_weights(weights)
        target = self.family.target(w, divergence)
        self.last_note = target.note
        return target, w

    def prompt_texts(self, prompts: Any, weights: Any, divergence: str | None = None) -> list[str]:
        """The exact text the model continues for each prompt at ``weights`` (conditioning and chat template)."""
        from moalign.eval.generate import policy_prompts, render_prompts, validate_prompts

        target, _ = self._target(weights, divergence)
        asked = _as_prompt_list(prompts)
        if target.prompt_transform is not None:
            asked = [target.prompt_transform(p) for p in asked]
        texts, _ = render_prompts(self.tokenizer, policy_prompts(validate_prompts(asked), target.policy),
                                  self.family.use_chat_template)
        return texts

    def generate(self, prompts: str | Sequence[Any], weights: Any, max_new_tokens: int = 64,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, divergence: str | None = None,
                 batch_size: int = 32, precision: str = "auto",
                 return_finished: bool = False) -> list[str] | tuple[list[str], list[bool]]:
        """Completions of the policy of ``weights``, one per prompt (a single prompt gives a list of one).

        ``temperature`` 0 decodes greedily; above 0 samples (torch seeded with ``seed``). ``divergence``: how a
        multi-head model combines its heads (default reverse KL, MOPO paper App. A.6); other families ignore it.
        ``return_finished``: also return, per prompt, whether it ended with an end-of-sequence token (False: cut
        at ``max_new_tokens``; ``moalign serve`` reports it as OpenAI's ``finish_reason``).
        """
        target, _ = self._target(weights, divergence)
        asked = _as_prompt_list(prompts)
        if target.prompt_transform is not None:
            asked = [target.prompt_transform(p) for p in asked]
        from moalign.eval.generate import generate_completions

        settings = self.generation_settings(max_new_tokens, temperature, top_p, seed, batch_size, precision)
        return generate_completions(target.model, self.tokenizer, asked, target.policy, settings,
                                    return_finished=return_finished)

    def export(self, weights: Any, out: str | Path, divergence: str | None = None, overwrite: bool = False) -> Path:
        """Write a plain transformers folder for ``weights`` (:func:`moalign.inference.export.export_policy`)."""
        from moalign.inference.export import export_policy

        return export_policy(self, weights, out, divergence=divergence, overwrite=overwrite)


def load_policy(directory: str | Path, dtype: Any = None) -> LoadedPolicy:
    """The :class:`LoadedPolicy` of a folder written by ``moalign train <method>`` (any of the nine methods).

    Also accepts a folder whose sub-folders are MODPO models for several weight vectors. Nothing heavy loads
    until the first ``generate`` or ``export``. ``dtype`` (e.g. ``torch.bfloat16``): the models' dtype (None: as
    saved); an export keeps it.
    """
    family = family_for(directory)
    family.dtype = dtype
    return LoadedPolicy(family)
