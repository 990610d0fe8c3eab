"""Run by the export tests in a fresh interpreter: read exported folders with plain transformers only.

Usage: ``python plain_transformers_probe.py REQUEST.json RESULT.json``. The request lists folders, token-id
batches (random prompts), chat conversations and greedy settings. For each folder the result holds next-token
log-probs at every position in float32 and float64, the chat-template rendering of each conversation, greedy
new-token ids for each rendered conversation, and ``pipeline("text-generation")``'s answer to it. The script
must not import moalign (checked at the end: ``'moalign' not in sys.modules``).
"""

from __future__ import annotations

import json
import sys


def probe(entry: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    folder = entry["dir"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor(entry["ids"])
    out: dict = {}
    for name, dtype in (("logp32", torch.float32), ("logp64", torch.float64)):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        with torch.no_grad():
            out[name] = torch.log_softmax(model(input_ids=ids).logits.to(dtype), dim=-1).tolist()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out["rendered"], out["greedy"], out["pipeline"] = [], [], []
    chat = pipeline("text-generation", model=folder, tokenizer=folder)
    for conversation in entry["chats"]:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        out["rendered"].append(text)
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            generated = model.generate(**enc, max_new_tokens=entry["max_new_tokens"], do_sample=False)
        new = generated[0, enc["input_ids"].shape[1]:]
        out["greedy"].append(tokenizer.decode(new, skip_special_tokens=True))
        answer = chat(conversation, max_new_tokens=entry["max_new_tokens"], do_sample=False)
        out["pipeline"].append(answer[0]["generated_text"][-1]["content"])
    return out


def main(request_path: str, result_path: str) -> None:
    with open(request_path) as handle:
        request = json.load(handle)
    result = {name: probe(entry) for name, entry in request.items()}
    result["_moalign_imported"] = "moalign" in sys.modules or any(m.startswith("moalign.") for m in sys.modules)
    with open(result_path, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
