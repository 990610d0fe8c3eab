"""Tiny models and tokenizers for the eval tests (random weights, no hub).

``StandInMultiHead`` is a minimal local stand-in for ``moalign.models.MultiHeadCausalLM``
(same interface: ``head_names``, ``num_heads``, ``head`` (context), ``steer``,
``reference_context``, ``generate``). Head k adds a large logit bias to one
letter, so head 0 writes many ``a`` and head 1 many ``b``; steering with
reverse KL combines the heads' log-probs as ``sum_k w_k log p_k`` (paper App.
A.6), which interpolates the two biases. The base model has no bias.
"""

from __future__ import annotations

import contextlib
import string

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor, LogitsProcessorList, PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARS = list(string.ascii_lowercase + string.digits + " .,?!'<>|/")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_char_tokenizer(chat_template: str | None = None) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def make_tiny_llama(vocab_size: int, seed: int = 0, initializer_range: float = 0.02) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        initializer_range=initializer_range,
    )
    return LlamaForCausalLM(config).eval()


class _HeadBias(LogitsProcessor):
    def __init__(self, owner: StandInMultiHead) -> None:
        self.owner = owner

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        mode = self.owner.mode
        if mode[0] == "reference":
            return scores
        per_head = [torch.log_softmax(scores + b, dim=-1) for b in self.owner.biases]
        if mode[0] == "head":
            return per_head[mode[1]]
        if mode[0] == "steer":
            return sum(w * lp for w, lp in zip(mode[1], per_head))
        return per_head[0]  # the model as it is: its default head 0


class StandInMultiHead(torch.nn.Module):
    """Stand-in for moalign.models.MultiHeadCausalLM: K logit-bias heads over a tiny Llama."""

    def __init__(self, base: LlamaForCausalLM, biases: list[torch.Tensor], head_names: list[str]) -> None:
        super().__init__()
        self.base = base
        self.biases = biases
        self.head_names = head_names
        self.mode: tuple = ("model",)
        self.calls: list[tuple] = []

    @property
    def num_heads(self) -> int:
        return len(self.biases)

    @contextlib.contextmanager
    def _set(self, mode: tuple):
        old, self.mode = self.mode, mode
        try:
            yield self
        finally:
            self.mode = old

    def head(self, k: int):
        """Context manager, as in the real MultiHeadCausalLM (whose use_head() sets the state for good)."""
        return self._set(("head", k))

    def steer(self, weights, divergence: str = "reverse_kl"):
        assert divergence == "reverse_kl"
        return self._set(("steer", tuple(weights)))

    def reference_context(self):
        return self._set(("reference",))

    def generate(self, **kwargs):
        self.calls.append((self.mode, kwargs["input_ids"].clone()))
        return self.base.generate(**kwargs, logits_processor=LogitsProcessorList([_HeadBias(self)]))




@pytest.fixture
def char_tokenizer() -> PreTrainedTokenizerFast:
    return make_char_tokenizer(CHAT_TEMPLATE)


@pytest.fixture
def tiny_llama(char_tokenizer) -> LlamaForCausalLM:
    return make_tiny_llama(len(char_tokenizer))


@pytest.fixture
def standin_model(char_tokenizer, tiny_llama) -> StandInMultiHead:
    v = len(char_tokenizer)
    biases = []
    for letter in ("a", "b"):
        b = torch.zeros(v)
        b[char_tokenizer.convert_tokens_to_ids(letter)] = 6.0
        biases.append(b)
    return StandInMultiHead(tiny_llama, biases, head_names=["count_a", "count_b"])
