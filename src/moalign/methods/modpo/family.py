"""MODPO's policies: one trained model per weight vector (:class:`PerWeightFamily`: the model nearest a requested
weight), and the models ``moalign compare`` evaluates (:func:`compare_policies`: each with its weights)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from moalign.inference.families import (
    ExportedModel,
    GenerationTarget,
    PolicyFamily,
    export_single_model,
    load_single_model,
)
from moalign.methods.spec import PolicyContext


def compare_policies(ctx: PolicyContext) -> list[tuple[Any, list]]:
    """One group per trained model: the model as it is, labelled with its weight vector."""
    from moalign.eval.policies import Policy

    return [(ctx.multihead(d), [(Policy.as_is(f"modpo[{','.join(f'{v:g}' for v in w)}]"), None, w)])
            for d, w in zip(ctx.models, ctx.job_weights)]


class PerWeightFamily(PolicyFamily):
    """MODPO: one trained model per weight vector; the policy of ``w`` is the model trained nearest to it."""

    kind = "per_weight"

    @property
    def members(self) -> list[tuple[tuple[float, ...], Path]]:
        """``(weights, folder)`` of every trained model, from its head name ``modpo_w_0.7_0.3``."""
        folders = self.folder.members or [self.folder.path]
        out = []
        for directory in folders:
            payload = json.loads((directory / "multihead_config.json").read_text())
            name = payload["multihead"]["head_names"][0]
            out.append((tuple(float(v) for v in name.rsplit("w_", 1)[1].split("_")), directory))
        return out

    def nearest(self, weights: tuple[float, ...]) -> tuple[tuple[float, ...], Path, bool]:
        """``(trained weights, folder, exact)`` of the model nearest ``weights`` (Euclidean; ties: first folder)."""
        best = min(self.members, key=lambda m: (math.dist(m[0], weights), str(m[1])))
        return best[0], best[1], math.dist(best[0], weights) < 1e-9

    def _select(self, weights: tuple[float, ...]) -> tuple[Path, str | None]:
        trained, directory, exact = self.nearest(weights)
        if exact:
            return directory, None
        note = (f"{self.folder.method} trains one model per weight vector; none was trained for {list(weights)}, "
                f"so the nearest one is used: {directory} (trained for {list(trained)})")
        warnings.warn(note, stacklevel=3)
        return directory, note

    @property
    def tokenizer_dir(self) -> Path:
        return self.members[0][1]

    def describe(self, weights: tuple[float, ...]) -> str:
        trained, directory, _ = self.nearest(weights)
        return f"{self.folder.method} model trained for {list(trained)} ({directory})"

    def target(self, weights: tuple[float, ...], divergence: str | None = None) -> GenerationTarget:
        from moalign.eval.policies import Policy

        directory, note = self._select(weights)
        if getattr(self, "_loaded_dir", None) != directory:
            self._model, self._loaded_dir = load_single_model(directory, self.folder.base_model, self.dtype), directory
        return GenerationTarget(self._model, Policy.as_is(f"{self.folder.method}:{directory.name}"), note=note)

    def export(self, weights: tuple[float, ...], divergence: str | None = None) -> ExportedModel:
        directory, note = self._select(weights)
        model = export_single_model(load_single_model(directory, self.folder.base_model, self.dtype))
        return ExportedModel(model, notes=[note or f"The model trained for exactly these weights ({directory})."])
