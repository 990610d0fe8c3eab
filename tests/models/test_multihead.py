"""MultiHeadCausalLM training API against independent computations.

Independent truth: a separate plain ``LlamaForCausalLM`` whose LoRA is merged
(``peft.merge_and_unload``) and whose ``lm_head`` is an ``nn.Linear`` holding
head k's explicit weight matrix (W_0 + s A B for low-rank heads), scored with
``log_softmax`` and a per-token Python loop.
"""

import copy

import pytest
import torch
from peft import LoraConfig
from torch import nn

from moalign.models import MultiHeadCausalLM
from moalign.models.testing import make_tiny_llama, make_tiny_tokenizer

PROMPTS = ["hello you are", "tell me a story about the cat", "why"]
COMPLETIONS = ["good and kind .", "the cat is happy", "because it is really very funny !"]


def _batch(tokenizer):
    rows = [tokenizer(p + " " + c)["input_ids"] for p, c in zip(PROMPTS, COMPLETIONS)]
    prompt_lengths = [len(tokenizer(p)["input_ids"]) for p in PROMPTS]
    length = max(len(r) for r in rows)
    input_ids = torch.zeros(len(rows), length, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    completion = torch.zeros_like(input_ids)
    for i, (row, start) in enumerate(zip(rows, prompt_lengths)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        completion[i, start : len(row)] = 1  # right padding
    return input_ids, attention, completion


def _wrap(head_type="low_rank", lora=True, num_heads=3, seed=0):
    model = make_tiny_llama(seed=seed)
    lora_config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0) if lora else None
    return MultiHeadCausalLM(model, num_heads=num_heads, head_type=head_type, head_rank=3, lora_config=lora_config)


def _randomise(model: MultiHeadCausalLM, seed: int = 1) -> None:
    """Move every trainable parameter (LoRA and heads) away from its init so heads differ."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.3)


def _explicit_head_weight(model: MultiHeadCausalLM, k: int) -> torch.Tensor:
    head = model.output.heads[k]
    if model.head_config.head_type == "full":
        return head.weight.detach().clone()
    return (model.output.base_weight + head.scaling * head.A @ head.B).detach().clone()


def _plain_model(model: MultiHeadCausalLM, weight: torch.Tensor) -> nn.Module:
    """An independent plain causal LM: merged LoRA, lm_head = nn.Linear(weight)."""
    clone = copy.deepcopy(model.model)
    plain = clone.merge_and_unload() if model.is_peft else clone
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    head.weight = nn.Parameter(weight.clone())
    plain.lm_head = head
    return plain.eval()


def _logps_by_hand(plain: nn.Module, input_ids, attention, completion, average=False) -> torch.Tensor:
    with torch.no_grad():
        log_probs = torch.log_softmax(plain(input_ids=input_ids, attention_mask=attention).logits, dim=-1)
    out = []
    for b in range(input_ids.shape[0]):
        total, count = 0.0, 0
        for t in range(1, input_ids.shape[1]):
            if completion[b, t]:
                total += float(log_probs[b, t - 1, input_ids[b, t]])
                count += 1
        out.append(total / count if average else total)
    return torch.tensor(out)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tiny_tokenizer()


@pytest.mark.parametrize("head_type", ["low_rank", "full"])
@pytest.mark.parametrize("lora", [True, False])
def test_sequence_logps_equal_independent_plain_forward(tokenizer, head_type, lora):
    model = _wrap(head_type, lora)
    _randomise(model)
    model.eval()
    batch = _batch(tokenizer)
    with torch.no_grad():
        got_sum = model.sequence_logps(*batch)
        got_mean = model.sequence_logps(*batch, heads=[2, 0], average=True)
    assert got_sum.shape == (3, 3) and got_mean.shape == (2, 3)
    for k in range(3):
        plain = _plain_model(model, _explicit_head_weight(model, k))
        torch.testing.assert_close(got_sum[k], _logps_by_hand(plain, *batch), rtol=1e-5, atol=1e-4)
    plain2 = _plain_model(model, _explicit_head_weight(model, 2))
    torch.testing.assert_close(got_mean[0], _logps_by_hand(plain2, *batch, average=True), rtol=1e-5, atol=1e-5)
    # heads differ after randomisation (the test can tell them apart)
    assert (got_sum[0] - got_sum[1]).abs().max() > 1e-2


def test_sequence_logps_gradients_with_and_without_head_checkpointing(tokenizer):
    batch = _batch(tokenizer)
    grads = []
    for checkpoint_heads in (True, False):
        model = _wrap("full", True)  # low-rank heads take the shared-projection path (tests/models/test_shared_projection.py)
        model.head_config.checkpoint_heads = checkpoint_heads
        _randomise(model)
        logps = model.sequence_logps(*batch)
        (logps * torch.tensor([[1.0], [-2.0], [0.5]])).sum().backward()
        grads.append([p.grad.clone() for p in model.trainable_parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in grads[0])


def test_reference_context_equals_the_original_base_model(tokenizer):
    batch = _batch(tokenizer)
    original = make_tiny_llama(seed=0)  # same weights as the wrapped one, never wrapped
    expected = _logps_by_hand(original, *batch)
    model = _wrap("full", True)
    _randomise(model)
    with torch.no_grad(), model.reference_context():
        reference = model.sequence_logps(*batch)
        logits = model(input_ids=batch[0], attention_mask=batch[1]).logits
        steered = model.steer([0.5, 0.5, 0.0])
        with steered:
            logits_steered = model(input_ids=batch[0], attention_mask=batch[1]).logits
    for k in range(3):
        torch.testing.assert_close(reference[k], expected, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        base_logits = original(input_ids=batch[0], attention_mask=batch[1]).logits
        policy = model.sequence_logps(*batch)
    torch.testing.assert_close(logits, base_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits_steered, base_logits, rtol=1e-5, atol=1e-5)
    assert (policy - expected).abs().max() > 1e-2  # outside the context the trained policy is back


@pytest.mark.parametrize("lora", [True, False])
def test_lagged_snapshot_is_restored_exactly(tokenizer, lora):
    batch = _batch(tokenizer)
    model = _wrap("low_rank", lora)
    _randomise(model)
    with pytest.raises(RuntimeError):
        with model.snapshot_context():
            pass
    with torch.no_grad():
        at_snapshot = model.sequence_logps(*batch)
    model.take_snapshot()
    trainable_before = [id(p) for p in model.trainable_parameters()]
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        (-model.sequence_logps(*batch).sum()).backward()
        optimizer.step()
    with torch.no_grad():
        trained = model.sequence_logps(*batch)
        with model.snapshot_context():
            lagged = model.sequence_logps(*batch)
            assert not any(p.requires_grad for n, p in model.named_parameters() if ".default." in n)
        after = model.sequence_logps(*batch)
    assert (trained - at_snapshot).abs().max() > 1e-2
    torch.testing.assert_close(lagged, at_snapshot, rtol=0, atol=1e-5)
    torch.testing.assert_close(after, trained, rtol=0, atol=0)
    assert [id(p) for p in model.trainable_parameters()] == trainable_before
    # a second snapshot overwrites the first
    model.take_snapshot()
    with torch.no_grad(), model.snapshot_context():
        torch.testing.assert_close(model.sequence_logps(*batch), trained, rtol=0, atol=1e-5)


@pytest.mark.parametrize("head_type", ["full", "low_rank"])
def test_tied_input_embedding_stays_unchanged_by_training(tokenizer, head_type):
    base = make_tiny_llama(seed=0, tie_word_embeddings=True)
    assert base.lm_head.weight is base.model.embed_tokens.weight  # precondition: tied
    embedding_before = base.model.embed_tokens.weight.detach().clone()
    model = MultiHeadCausalLM(base, num_heads=2, head_type=head_type, lora_config=LoraConfig(r=2))
    embedding = base.get_input_embeddings().weight
    if head_type == "full":
        assert all(head.weight.data_ptr() != embedding.data_ptr() for head in model.output.heads)
    assert not embedding.requires_grad
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=1.0)
    heads_before = [p.detach().clone() for p in model.output.heads.parameters()]
    (-model.sequence_logps(*_batch(tokenizer)).sum()).backward()
    optimizer.step()
    torch.testing.assert_close(embedding, embedding_before, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(heads_before, model.output.heads.parameters()))


def test_trainable_parameters_are_lora_and_heads_only():
    model = _wrap("low_rank", True)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(".lora_" in n or ".heads." in n for n in names)
    assert any(".heads." in n for n in names) and any(".lora_" in n for n in names)
    assert not any("lm_head" in n and "lora" in n for n in names)
    frozen = _wrap("full", lora=False)
    names = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert names and all(".heads." in n for n in names)
    counts = model.parameter_counts()
    assert counts["heads"] == 3 * 3 * (85 + 32)
    assert counts["base"] == sum(p.numel() for p in make_tiny_llama().parameters())


def test_low_rank_parameter_memory_of_three_heads_versus_one():
    one, three = _wrap("low_rank", True, num_heads=1), _wrap("low_rank", True, num_heads=3)
    extra = sum(p.numel() for p in three.parameters()) - sum(p.numel() for p in one.parameters())
    assert extra == 2 * 3 * (85 + 32)  # two more rank-3 heads: r (V + d) each


def test_head_names_and_validation(tokenizer):
    model = MultiHeadCausalLM(make_tiny_llama(), num_heads=2, head_names=["helpful", "harmless"])
    assert model.num_heads == 2 and model.head_names == ["helpful", "harmless"]
    assert model.head_index("harmless") == 1
    input_ids, attention, completion = _batch(tokenizer)
    with pytest.raises(ValueError, match="unknown head"):
        model.head_index("funny")
    with pytest.raises(ValueError):
        model.sequence_logps(input_ids, attention, completion, heads=[2])
    bad = completion.clone()
    bad[0, 0] = 1
    with pytest.raises(ValueError, match=r"completion_mask\[0, 0\]"):
        model.sequence_logps(input_ids, attention, bad)
    bad = completion.clone()
    bad[2, -1] = 1  # row 2 is padded at the end
    with pytest.raises(ValueError, match="padding"):
        model.sequence_logps(input_ids, attention, bad)
    empty = completion.clone()
    empty[1] = 0
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        model.sequence_logps(input_ids, attention, empty, average=True)
    with pytest.raises(ValueError):
        MultiHeadCausalLM(make_tiny_llama(), num_heads=2, head_names=["a", "a"])
    with pytest.raises(TypeError):
        MultiHeadCausalLM(make_tiny_llama(), num_heads=2, heads_count=3)


def test_other_architecture_gpt2_with_conv1d_lora():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0)
    gpt2 = GPT2LMHeadModel(config).eval()
    input_ids = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    completion = torch.zeros_like(input_ids)
    completion[:, 3:] = 1
    with torch.no_grad():
        log_probs = torch.log_softmax(gpt2(input_ids).logits, dim=-1)
    expected = torch.stack([log_probs[b, 2:5].gather(-1, input_ids[b, 3:6, None]).sum() for b in range(2)])
    model = MultiHeadCausalLM(gpt2, num_heads=2, lora_config=LoraConfig(r=2))
    assert any("c_attn" in name for name in model.lora_config.target_modules)
    with torch.no_grad():
        got = model.sequence_logps(input_ids, torch.ones_like(input_ids), completion)
    torch.testing.assert_close(got, expected.expand(2, 2), rtol=1e-5, atol=1e-5)


def test_models_that_post_process_logits_are_rejected():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, final_logit_softcapping=3.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        MultiHeadCausalLM(Gemma2ForCausalLM(config), num_heads=2)


def test_low_rank_shared_projection_gradients_equal_the_per_head_path(tokenizer):
    """sequence_logps (shared base projection) vs each head's own logits through plain autograd."""
    batch = _batch(tokenizer)
    upstream = torch.tensor([[1.0], [-2.0], [0.5]])
    model = _wrap("low_rank", True)
    _randomise(model)
    (model.sequence_logps(*batch) * upstream).sum().backward()
    shared = [p.grad.clone() for p in model.trainable_parameters()]
    model.zero_grad()
    model.head_config.checkpoint_heads = False
    input_ids, attention, completion = batch
    hidden = model.hidden_states(input_ids, attention)
    mask = completion[:, 1:].bool()
    per_head = torch.stack([model._token_logps(hidden[:, :-1][mask], input_ids[:, 1:][mask], k, "policy")
                            for k in range(3)])
    rows = torch.arange(3).unsqueeze(1).expand_as(mask)[mask]
    (per_head.new_zeros(3, 3).index_add(1, rows, per_head) * upstream).sum().backward()
    for a, b in zip(shared, [p.grad for p in model.trainable_parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # float32, different summation order
    assert all(g.abs().sum() > 0 for g in shared)
