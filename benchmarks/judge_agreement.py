"""What the bundled judge's verdicts are worth: agreement of SmolLM2-135M-Instruct, used as the
:class:`moalign.eval.judge.CausalLMJudge`, with the offline scorers on pairs whose answer is known.

Pairs (issue 13, "say plainly what its verdicts are worth"; results in docs/judge.md):

* **positivity** (20 pairs): for test prompts of the demo split (``moalign compare --task demo``'s
  default seeded split), SmolLM2's own greedy answer (cut to its last full sentence) is the core; the
  better response wraps it in a warm opening and closing, the worse one in a cold, discouraging one
  of similar length. A pair is kept only when VADER (``positivity``) scores its two responses at least
  0.5 apart: the first 20 such of the first 30 test prompts.
* **conciseness** (20 pairs, the first 20 test prompts): the core alone (better) vs the core plus two
  neutral filler sentences (worse, 44 words longer).

Each pair is judged in both orders (:func:`moalign.eval.judge.pairwise_win_rate` with x = the
scorer-preferred response): *agreement* is the fraction of pairs whose order-averaged win probability
of that response is above 1/2, with its bootstrap CI; *first-order agreement* / *second-order agreement*
are what a judge asked only once would give with the better response shown first / second; position
bias and order consistency as in the module. Both judge formats run: the chat template (default)
and the raw template.

Usage::

    nice -n 19 .venv/bin/python benchmarks/judge_agreement.py [--json FILE] [--judge-model NAME]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

OPEN_WARM = ["I'm so happy to help with this, great question!", "What a lovely thing to ask, thank you!",
             "Happy to help, you're doing great by asking!", "Oh, wonderful question, I love this one!",
             "Thanks so much for asking, this is a joy to answer!"]
CLOSE_WARM = ["Wishing you a wonderful day, you've got this!", "Good luck, I'm sure it will go brilliantly!",
              "Have fun with it, you'll do great!", "Hope this helps, take care and enjoy!",
              "Best wishes, I'm cheering for you!"]
OPEN_COLD = ["Ugh, this is a tedious question and frankly annoying.", "Honestly, this is a boring thing to ask.",
             "Fine, though this is a dull and irritating question.", "Sigh, I hate questions like this.",
             "This is a pointless question, but whatever."]
CLOSE_COLD = ["It will probably go badly anyway, sadly.", "Don't expect much, it is usually a miserable failure.",
              "Frankly, you will likely mess it up.", "Whatever, it's a hopeless waste of time.",
              "Good luck, you will need it, this is awful."]
FILLER = ("To put it another way, the points above are the main ones to keep in mind in this situation. "
          "There are of course many other details that could be added here, but these already cover the "
          "general idea in a reasonable amount of detail.")


def judge_pairs(model, tokenizer, n: int = 20, candidates: int = 30) -> dict[str, tuple[list, list, list]]:
    """``{objective: (prompts, better, worse)}``, ``n`` pairs each, from SmolLM2's greedy answers to demo test
    prompts (positivity: the first ``n`` of ``candidates`` prompts whose VADER gap is >= 0.5)."""
    from moalign.eval.generate import GenerationSettings, generate_completions
    from moalign.eval.policies import Policy
    from moalign.experiments.compare import CompareConfig
    from moalign.experiments.compare_demo import demo_config
    from moalign.experiments.demo import cut_to_last_sentence, split_prompts
    from moalign.rewards.offline import ConcisenessReward, PositivityReward

    prompts = split_prompts(demo_config(CompareConfig()))["test"][:candidates]
    raw = generate_completions(model, tokenizer, prompts, Policy.as_is("base"),
                               GenerationSettings(max_new_tokens=40, batch_size=candidates, progress=False))
    cores = [cut_to_last_sentence(c).strip() or c.strip() for c in raw]
    warm = [f"{OPEN_WARM[i % 5]} {c} {CLOSE_WARM[i % 5]}" for i, c in enumerate(cores)]
    cold = [f"{OPEN_COLD[i % 5]} {c} {CLOSE_COLD[i % 5]}" for i, c in enumerate(cores)]
    pos = PositivityReward()
    gap = np.array(pos.score(prompts, warm)) - np.array(pos.score(prompts, cold))
    keep = [i for i in range(candidates) if gap[i] >= 0.5][:n]
    short, long = cores[:n], [f"{c} {FILLER}" for c in cores[:n]]
    con = ConcisenessReward()
    assert all(np.array(con.score(prompts[:n], short)) > np.array(con.score(prompts[:n], long)))
    return {"positivity": ([prompts[i] for i in keep], [warm[i] for i in keep], [cold[i] for i in keep]),
            "conciseness": (prompts[:n], short, long)}


class Recorded:
    """A judge that keeps every answer (pairwise_win_rate asks x first, then y first)."""

    def __init__(self, judge) -> None:
        self.judge, self.answers = judge, []

    def prefer_first(self, prompts, firsts, seconds, objective):
        self.answers.append(self.judge.prefer_first(prompts, firsts, seconds, objective))
        return self.answers[-1]


def measure(judge, pairs: dict) -> dict[str, dict]:
    """Agreement, one-order agreements, position bias and order consistency per objective."""
    from moalign.eval.judge import pairwise_win_rate

    out = {}
    for objective, (prompts, better, worse) in pairs.items():
        recorded = Recorded(judge)
        r = pairwise_win_rate(recorded, prompts, better, worse, objective, num_samples=2000, seed=0)
        p_first_better, p_first_worse = recorded.answers  # every pair differs: both orders, all pairs
        out[objective] = {"pairs": len(prompts), "agreement": r["wins"] / len(prompts),
                          "ties": r["ties"], "mean_win_prob": r["win_rate"], "ci": [r["ci_low"], r["ci_high"]],
                          "first_order_agreement": float(np.mean(p_first_better > 0.5)),
                          "second_order_agreement": float(np.mean(p_first_worse < 0.5)),
                          "position_bias": r["position_bias"], "order_consistency": r["order_consistency"]}
    return out


def main() -> None:
    from moalign.runtime import configure_cpu_threads

    configure_cpu_threads()
    import torch

    from moalign.data.prompts import has_chat_template
    from moalign.eval.judge import CausalLMJudge, JudgeConfig
    from moalign.models import load_base_model, load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--judge-model", default="smollm2", help="judge (load_base_model name; the pairs are "
                        "always built from SmolLM2's answers)")
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.time()
    model, tokenizer = load_base_model("smollm2"), load_tokenizer("smollm2")
    pairs = judge_pairs(model, tokenizer)
    if args.judge_model != "smollm2":
        model, tokenizer = load_base_model(args.judge_model), load_tokenizer(args.judge_model)
    print(f"pairs: positivity {len(pairs['positivity'][0])} (VADER gap >= 0.5 of 30 candidates), conciseness "
          f"{len(pairs['conciseness'][0])}; built in {time.time() - start:.0f} s")
    results = {}
    formats = [("chat template", True)] if has_chat_template(tokenizer) else []
    for label, chat in formats + [("raw template", False)]:
        t = time.time()
        judge = CausalLMJudge(model, tokenizer, JudgeConfig(judge_chat_template=chat))
        results[label] = measure(judge, pairs)
        print(f"\n## judge {args.judge_model}, {label} ({time.time() - t:.0f} s)\n")
        print("| objective | pairs | agreement (both orders) | mean win prob of the better [95% CI] | "
              "agreement, better shown first | agreement, better shown second | position bias | "
              "order consistency |")
        print("|---|---|---|---|---|---|---|---|")
        for objective, m in results[label].items():
            print(f"| {objective} | {m['pairs']} | {m['agreement']:.2f} | {m['mean_win_prob']:.3f} "
                  f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}] | {m['first_order_agreement']:.2f} | "
                  f"{m['second_order_agreement']:.2f} | {m['position_bias']:.3f} | {m['order_consistency']:.2f} |")
    print(f"\ntotal {time.time() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
