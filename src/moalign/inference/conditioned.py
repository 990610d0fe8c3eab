"""The prompt-conditioned families (MO-ODPO, P-MORL, RiC) and the chat templates that carry their weights.

These methods train one policy that reads the preference from its prompt: MO-ODPO and P-MORL a system
instruction block ``[Begin System Instruction] / helpful: 0.7, harmless: 0.3 / [End System Instruction]``
(MO-ODPO paper §3.3; :mod:`moalign.data.conditioning`), RiC target rewards ``<rm1_score> 1.2 <rm2_score> 0.4``
appended to the user's message (:mod:`moalign.data.ric`). Their weights change no parameter, so an exported
model is the policy itself (LoRA and head merged) and the weights go into the exported tokenizer's **chat
template**: a short Jinja preamble rewrites the ``messages`` a client sends exactly as moalign rewrites a prompt,
then the original template renders them. A plain client that sends ``[{"role": "user", "content": x}]`` to
``pipeline("text-generation")`` therefore feeds the model the same text as ``moalign generate --prompt x``.

Placement, mirroring :func:`~moalign.data.conditioning.render_conditioned_prompt`: a conversation that opens with
a system message gets the block before that message's content; otherwise the block becomes a new first system
message when the model was trained with the block as a system message (``as_chat``, the default with a chat
template), or is prepended to the first message when it was trained with the block written into the prompt
text. RiC's targets go at the end of the last user message.

A model trained **without** the chat template (``use_chat_template: false``) continued raw text. Its exported
template then renders the raw text moalign would feed (the conditioning plus the messages' contents, joined),
so chat clients are still conditioned; a client that passes a plain string bypasses every chat template and
must prepend the conditioning itself (the model card prints it).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from moalign.inference.families import (
    ExportedModel,
    GenerationTarget,
    PolicyFamily,
    export_single_model,
)

__all__ = ["PromptConditionedFamily", "RewardConditionedFamily", "prefix_template", "reward_tags_template"]


def _literal(text: str) -> str:
    """``text`` as a Jinja string literal (JSON escapes are Jinja escapes; ASCII only, so nothing is lost)."""
    return json.dumps(text, ensure_ascii=True)


def _bos(tokenizer: Any) -> str:
    """``{{ bos_token }}`` when the tokenizer adds a BOS token to plain text (raw templates must add it too)."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return "{{ bos_token }}" if bos_id is not None and ids[:1] == [bos_id] else ""


def prefix_template(original: str | None, block: str, separator: str, as_chat: bool, bos: str = "") -> str:
    """A chat template writing ``block`` into the conversation (placement in the module docstring).

    ``original``: the template to render the rewritten messages with; None renders the raw text a model trained
    without a chat template continued (``bos`` + block + separator + the messages' contents).
    """
    b, sep = _literal(block), _literal(separator)
    if original is None:
        return (f"{bos}{{{{ {b} ~ {sep} }}}}{{%- for m in messages -%}}{{{{ m['content'] }}}}{{%- endfor -%}}")
    new_first = (f"{{%- set messages = [{{'role': 'system', 'content': {b}}}] + messages -%}}" if as_chat else
                 f"{{%- set messages = [{{'role': messages[0]['role'], 'content': {b} ~ {sep} ~ messages[0]['content']}}]"
                 " + messages[1:] -%}")
    return ("{%- if messages and messages[0]['role'] == 'system' -%}"
            f"{{%- set messages = [{{'role': 'system', 'content': {b} ~ {sep} ~ messages[0]['content']}}]"
            " + messages[1:] -%}"
            "{%- elif messages -%}" + new_first + "{%- endif -%}" + original)


def reward_tags_template(original: str | None, tags: str, bos: str = "") -> str:
    """A chat template appending RiC's ``tags`` to the last user message (``content.rstrip() + " " + tags``)."""
    t = _literal(tags)
    rewrite = ("{%- set ns = namespace(last=-1, out=[]) -%}"
               "{%- for m in messages -%}{%- if m['role'] == 'user' -%}{%- set ns.last = loop.index0 -%}{%- endif -%}"
               "{%- endfor -%}"
               "{%- for m in messages -%}{%- if loop.index0 == ns.last -%}"
               f"{{%- set ns.out = ns.out + [{{'role': m['role'], 'content': (m['content'] | string).rstrip() ~ ' ' ~ {t}}}] -%}}"
               "{%- else -%}{%- set ns.out = ns.out + [m] -%}{%- endif -%}{%- endfor -%}"
               "{%- set messages = ns.out -%}")
    if original is None:
        return rewrite + bos + "{%- for m in messages -%}{{ m['content'] }}{%- endfor -%}"
    return rewrite + original


class _ConditionedFamily(PolicyFamily):
    """One policy whose prompt carries the weights; export: the merged policy plus a rewriting chat template."""

    kind = "conditioned"

    def rewrite(self, weights: tuple[float, ...]) -> Any:
        """The function rewriting one prompt for ``weights`` (None: prompts unchanged)."""
        raise NotImplementedError

    def chat_template(self, weights: tuple[float, ...]) -> str:
        raise NotImplementedError

    def export(self, weights: tuple[float, ...], divergence: str | None = None) -> ExportedModel:
        model = export_single_model(self._take_model())
        template = self.chat_template(weights)
        how = ("The chat template writes the conditioning for these weights into every conversation before "
               "rendering it (docs/use_your_model.md)." if self.use_chat_template else
               "Trained on raw text: the chat template renders the conditioning plus the messages' contents; a "
               "client passing a plain string must prepend the conditioning itself.")
        return ExportedModel(model, chat_template=template, notes=[f"The {self.folder.method} policy, LoRA and head "
                                                                   "merged. " + how])

    def _original_template(self) -> str | None:
        return self.tokenizer.chat_template if self.use_chat_template else None


class PromptConditionedFamily(_ConditionedFamily):
    """MO-ODPO / P-MORL: the system-instruction block of :mod:`moalign.data.conditioning` (one-decimal grid)."""

    def __init__(self, folder: Any, conditioning_method: str) -> None:
        super().__init__(folder)
        from moalign.data.conditioning import ConditioningSpec, conditioning_file

        path = Path(folder.path) / conditioning_file(conditioning_method)  # what that method's trainer wrote
        self.payload = json.loads(path.read_text())
        self.spec = ConditioningSpec.from_saved(self.payload)
        self.decimals = self.spec.template.decimals
        #: False for an MO-ODPO model trained without weights in its prompt (fixed weights)
        self.conditioned = self.payload.get("condition_prompt", True) is not False

    @property
    def weight_names(self) -> list[str]:
        return list(self.spec.objectives)

    @property
    def use_chat_template(self) -> bool:
        saved = self.folder.setting("use_chat_template")
        # P-MORL renders its prompts with the chat template exactly when the block is a system message
        return saved if isinstance(saved, bool) else self.spec.as_chat

    def describe(self, weights: tuple[float, ...]) -> str:
        from moalign.data.conditioning import format_weight_line

        if not self.conditioned:
            return f"{self.folder.method} model trained without weights in its prompt (the same policy for any weights)"
        block = format_weight_line(weights, self.spec.objectives, self.spec.template).replace("\n", " / ")
        return f"{self.folder.method}: the prompt carries {block}"

    def target(self, weights: tuple[float, ...], divergence: str | None = None) -> GenerationTarget:
        from moalign.eval.policies import Policy

        if not self.conditioned:
            return GenerationTarget(self.model, Policy.as_is(self.folder.method),
                                    note="trained without weights in the prompt: the weights change nothing")
        return GenerationTarget(self.model, Policy.conditioned(weights, self.spec))

    def chat_template(self, weights: tuple[float, ...]) -> str | None:
        from moalign.data.conditioning import format_weight_line

        original = self._original_template()
        if not self.conditioned:
            return original
        block = format_weight_line(weights, self.spec.objectives, self.spec.template)
        return prefix_template(original, block, self.spec.template.separator, self.spec.as_chat, _bos(self.tokenizer))


class RewardConditionedFamily(_ConditionedFamily):
    """RiC: target rewards for ``w`` (RiC's mapping, HaM paper §2.2) appended to the prompt."""

    def __init__(self, folder: Any) -> None:
        super().__init__(folder)
        from moalign.methods.ric.trainer import RewardConditioner

        self.conditioner = RewardConditioner.load(folder.path)

    def _tags(self, weights: tuple[float, ...]) -> str:
        """The tags moalign appends for ``weights`` (cut from a rendered prompt, so the format is RiC's own)."""
        return self.conditioner.prompt_for_preference("x", list(weights))[len("x "):]

    def describe(self, weights: tuple[float, ...]) -> str:
        return f"ric: the prompt ends with the target rewards {self._tags(weights)}"

    def target(self, weights: tuple[float, ...], divergence: str | None = None) -> GenerationTarget:
        from moalign.eval.policies import Policy

        rewrite = functools.partial(self.conditioner.prompt_for_preference, preference=list(weights))
        return GenerationTarget(self.model, Policy.as_is("ric"), prompt_transform=rewrite)

    def chat_template(self, weights: tuple[float, ...]) -> str:
        return reward_tags_template(self._original_template(), self._tags(weights), _bos(self.tokenizer))

