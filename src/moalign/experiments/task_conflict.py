"""Do a task's objectives conflict, and does any of them reward a degenerate answer?

Before a text comparison is run on a set of scorers, two things decide whether its verdicts mean
anything: the objectives must conflict on the base model's own responses (otherwise one policy is best
on all of them and there is no front), and no objective may be maximised by a degenerate answer
(otherwise the widest front is a reward hack). This module measures both on the data the offline
methods train on:

* the Spearman rank correlation of every two candidate scorers over the base model's sampled responses
  to the train prompts (negative = they conflict), with its p-value;
* per scorer, where a few hand-written degenerate answers (empty, one word, a short stock phrase, a
  repeated phrase, the prompt itself repeated back) land among the sampled responses: the share of samples
  each one beats. A share near 1 means the scorer prefers that degenerate answer to nearly every real response.

Command: ``python -m moalign.experiments.task_conflict --out runs/task_conflict`` (samples are reused
from ``out/samples.jsonl`` when present; their prompts and number per prompt must match the arguments, the
other sampling settings are not checked).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

#: stands for the prompt itself in :data:`DEGENERATE_PROBES` (the echo probe answers each prompt with it)
PROMPT_ECHO = "{prompt}"

#: answers a reader would call degenerate, as a scorer sees them (each is given to every prompt)
DEGENERATE_PROBES = {
    "empty": "",
    "one word": "Sure.",
    "stock phrase": "Great question, good luck!",
    "repeated phrase": "I love it. I love it. I love it. I love it.",
    "echo of the prompt": PROMPT_ECHO,
}

DEFAULT_SCORERS = ("positivity", "relevance", "answer_relevance", "conciseness", "brevity")


def conflict_table(scores: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Spearman rho and its p-value for every two columns of ``scores`` (rows = responses)."""
    from scipy import stats

    rows = []
    for i, j in itertools.combinations(range(len(names)), 2):
        result = stats.spearmanr(scores[:, i], scores[:, j])
        rows.append({"pair": f"{names[i]}~{names[j]}", "spearman": float(result.statistic),
                     "p_value": float(result.pvalue)})
    return rows


def probe_shares(sample_scores: np.ndarray, probe_scores: np.ndarray) -> np.ndarray:
    """Share of sampled responses each probe beats, per scorer: ``(probes, scorers)``.

    ``sample_scores`` is ``(responses, scorers)``; ``probe_scores`` is ``(probes, prompts, scorers)`` -- a
    probe's score is its mean over the prompts (relevance depends on the prompt). Ties count one half.
    """
    mean_probe = probe_scores.mean(axis=1)  # (probes, scorers)
    below = (sample_scores[None, :, :] < mean_probe[:, None, :]).mean(axis=1)
    ties = (sample_scores[None, :, :] == mean_probe[:, None, :]).mean(axis=1)
    return below + 0.5 * ties


def run(args: argparse.Namespace) -> dict[str, Any]:
    from moalign.eval.degeneracy import degeneracy_summary
    from moalign.experiments.demo import (DemoConfig, read_jsonl, write_jsonl, sample_responses, split_prompts,
                                          training_samples)
    from moalign.models import load_base_model, load_tokenizer
    from moalign.rewards.labelling import score_completions
    from moalign.rewards.registry import resolve_rewards

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = DemoConfig(out=str(out), num_train_prompts=args.num_train_prompts,
                      responses_per_prompt=args.responses_per_prompt, sample_max_new_tokens=args.max_new_tokens,
                      sample_temperature=args.temperature, seed=args.seed, precision=args.precision)
    prompts = split_prompts(demo)["train"]
    samples_path = out / "samples.jsonl"
    if not samples_path.exists():
        model, tokenizer = load_base_model(args.model), load_tokenizer(args.model)
        write_jsonl(samples_path, sample_responses(model, tokenizer, prompts, demo))
    samples = training_samples(read_jsonl(samples_path), "truncated", source=str(samples_path))
    if sorted(s["prompt"] for s in samples) != sorted(p for p in prompts for _ in range(args.responses_per_prompt)):
        raise ValueError(f"{samples_path} holds samples of other prompts or another number per prompt than "
                         "--num_train_prompts / --responses_per_prompt / --seed ask for: use a new --out")
    texts = [s["completion"] for s in samples]
    scorers = resolve_rewards(list(args.scorers))
    names = [f.name for f in scorers]
    scores = np.asarray(score_completions([s["prompt"] for s in samples], texts, scorers), float)
    probe_scores = np.stack([
        np.asarray(score_completions(prompts, [p if probe == PROMPT_ECHO else probe for p in prompts], scorers), float)
        for probe in DEGENERATE_PROBES.values()])
    shares = probe_shares(scores, probe_scores)
    result = {
        "command": "python -m moalign.experiments.task_conflict " + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()),
        "num_samples": len(samples), "num_prompts": len(prompts),
        "samples_degeneracy": degeneracy_summary(texts, [s["prompt"] for s in samples]),
        "mean_score": dict(zip(names, scores.mean(axis=0).tolist())),
        "conflict": conflict_table(scores, names),
        "degenerate_probes": {probe: dict(zip(names, row.tolist())) for probe, row in zip(DEGENERATE_PROBES, shares)},
    }
    (out / "task_conflict.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def render(result: dict[str, Any]) -> str:
    """The two markdown tables of a :func:`run` result: conflict per pair, then the probes' shares."""
    names = list(result["mean_score"])
    lines = [f"{result['num_samples']} base-model samples on {result['num_prompts']} train prompts; "
             f"{result['samples_degeneracy']['degenerate_share']:.1%} of them degenerate.", "",
             "| pair | Spearman | p |", "|---|---|---|"]
    lines += [f"| {r['pair']} | {r['spearman']:+.3f} | {r['p_value']:.2g} |" for r in result["conflict"]]
    lines += ["", "Share of the samples each degenerate answer beats:", "",
              "| answer | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {probe} | " + " | ".join(f"{row[n]:.2f}" for n in names) + " |"
              for probe, row in result["degenerate_probes"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/task_conflict",
                        help="Output folder: samples.jsonl (reused when present) and task_conflict.json.")
    parser.add_argument("--model", default="smollm2", help="Base model ('smollm2' or a saved model folder).")
    parser.add_argument("--scorers", nargs="+", default=list(DEFAULT_SCORERS),
                        help="Scorers to compare, as compare's --reward_functions (moalign.rewards.registry names, "
                             "name=spec, py:module:callable).")
    parser.add_argument("--num_train_prompts", type=int, default=128,
                        help="Train prompts of the demo's seeded split (as moalign compare --task demo).")
    parser.add_argument("--responses_per_prompt", type=int, default=3, help="Base-model samples per prompt.")
    parser.add_argument("--max_new_tokens", type=int, default=32, help="Length of the samples in tokens.")
    parser.add_argument("--temperature", type=float, default=0.7, help="Sampling temperature.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the prompt split and of the sampling.")
    parser.add_argument("--precision", default="auto", help="'auto', 'bf16' or 'fp32' (moalign.precision).")
    result = run(parser.parse_args(argv))
    print(render(result))


if __name__ == "__main__":
    main()
