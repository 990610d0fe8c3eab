"""Where the demo comparison's prompts come from: one object per split, so a phase can be held to its split.

The comparison trains on the train prompts, tunes on the validation prompts and reports on the test prompts,
used once after tuning. Every phase asks a :class:`DemoPromptSource` for the split it needs -- and nothing
else -- so a test can hand tuning a source whose ``test()`` fails (tests/experiments/test_compare_tuning.py).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any


class DemoPromptSource:
    """The seeded train / validation / test split of ``moalign demo`` (:func:`moalign.experiments.demo.split_prompts`)
    for a :class:`~moalign.experiments.compare.CompareConfig`.

    ``validation()`` is the first ``num_validation_prompts`` of the split's validation list (the split puts every
    prompt in neither train nor test there; tuning needs only the stated number).
    """

    def __init__(self, config: Any) -> None:
        self.config = config

    @cached_property
    def _splits(self) -> dict[str, list[str]]:
        from moalign.experiments.compare_demo import demo_config
        from moalign.experiments.demo import split_prompts

        return split_prompts(demo_config(self.config))

    def train(self) -> list[str]:
        """Prompts the methods train on (and the base model samples for the offline methods)."""
        return list(self._splits["train"])

    def validation(self) -> list[str]:
        """Prompts tuning scores its trials on."""
        return list(self._splits["validation"][: self.config.num_validation_prompts])

    def test(self) -> list[str]:
        """Prompts of the reported evaluation."""
        return list(self._splits["test"])
