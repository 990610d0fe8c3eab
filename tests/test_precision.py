"""The ``precision`` setting: what ``auto`` picks, that it reaches every forward pass of every trainer and of
generation (a tiny model whose decoder layers record the autocast state they ran in), and that
``moalign.core``'s math is bit-identical inside and outside a bf16 autocast context."""

from __future__ import annotations

import inspect

import pytest
import torch

import moalign.core.ham as core_ham
import moalign.core.losses as core_losses
import moalign.core.mopo as core_mopo
from moalign import precision as precision_module
from moalign.core.precision import is_full_precision
from moalign.precision import native_bf16, precision_autocast, resolve_precision
from moalign.methods.registry import available_methods
from tests.baselines.test_modpo import make_scored_rows
from tests.cli_setup import save_tiny_model, write_config, write_jsonl
from tests.trainers.test_ham_trainer import make_pointwise_rows
from tests.trainers.test_mopo_trainer import make_rows

REWARDS = ["good=py:tests.baselines.scripted_rewards:count_good", "short=py:tests.baselines.scripted_rewards:brevity"]
PROMPTS = [{"prompt": p} for p in ["hello you", "tell a story", "a cat", "say hi"]]


# ---------------------------------------------------------------- what auto picks
def test_auto_follows_the_capability_check(monkeypatch):
    monkeypatch.setattr(precision_module, "_cpu_has_native_bf16", lambda: False)
    assert not native_bf16("cpu")
    assert resolve_precision("auto", "cpu") == "fp32"
    assert isinstance(precision_autocast("auto", "cpu"), type(precision_autocast("fp32", "cpu")))
    assert resolve_precision("bf16", "cpu") == "bf16"  # asked explicitly: honoured (emulated)
    monkeypatch.setattr(precision_module, "_cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("fp32", "cpu") == "fp32"
    with precision_autocast("auto", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert resolve_precision("auto", "meta") == "fp32"  # no native bf16 known for other devices
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16; got 'half'"):
        resolve_precision("half")


def test_config_resolves_and_refuses_contradictions(monkeypatch, tmp_path):
    from moalign.methods.mopo.config import MOPOConfig

    monkeypatch.setattr(precision_module, "_cpu_has_native_bf16", lambda: False)
    assert MOPOConfig(output_dir=str(tmp_path), use_cpu=True).compute_precision == "fp32"
    monkeypatch.setattr(precision_module, "_cpu_has_native_bf16", lambda: True)
    assert MOPOConfig(output_dir=str(tmp_path), use_cpu=True).compute_precision == "bf16"
    assert MOPOConfig(output_dir=str(tmp_path), use_cpu=True, precision="fp32").compute_precision == "fp32"
    assert MOPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True).compute_precision == "bf16"
    with pytest.raises(ValueError, match="precision='fp32' contradicts bf16=True"):
        MOPOConfig(output_dir=str(tmp_path), use_cpu=True, precision="fp32", bf16=True)
    with pytest.raises(ValueError, match="precision must be one of"):
        MOPOConfig(output_dir=str(tmp_path), use_cpu=True, precision="fp16")


# ---------------------------------------------------------------- core runs in full precision
def _public_tensor_functions(module):
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if name.startswith("_") or fn.__module__ != module.__name__:
            continue
        annotations = " ".join(str(a) for a in inspect.get_annotations(fn).values())
        if "Tensor" in annotations:
            yield name, fn


@pytest.mark.parametrize("module", [core_mopo, core_ham, core_losses])
def test_every_public_tensor_function_of_core_is_full_precision(module):
    found = dict(_public_tensor_functions(module))
    assert found, f"no tensor functions found in {module.__name__}"
    missing = [name for name, fn in found.items() if not is_full_precision(fn)]
    assert not missing, f"{module.__name__}: not decorated with @full_precision: {missing}"
    assert is_full_precision(core_mopo.MOPODual.step) and is_full_precision(core_mopo.MOPODual.weights)


def _core_results(z, logps):
    """Core results on views of ``z`` and ``logps`` only (no arithmetic here, so a bf16 caller's inputs are exactly
    the bf16 tensors)."""
    from moalign.core import MOPODual, dpo_loss, lower_bound

    lb, chi = lower_bound(z, eps=0.1)
    dual = MOPODual(lam=torch.zeros(1), threshold=torch.full((1,), 0.4), tau=0.1, eps=0.1, lr_lambda=0.5)
    out = dual.step(z[:8], z[8:].unsqueeze(-1), extra_log_weight=logps[:8])
    losses, chosen, rejected = dpo_loss(logps[:4], logps[4:8], logps[8:12], logps[12:], 0.1)
    hv = core_ham.random_hypervolume_scalarization(z.view(8, 2), torch.zeros(2), seed=0)
    return [lb, chi, out.lam, out.weights, out.lower_bound, losses, chosen, rejected, hv, core_ham.weighted_log_likelihood(
        logps.view(2, 8), z.view(8, 2))]


def test_core_is_bit_identical_inside_bf16_autocast():
    gen = torch.Generator().manual_seed(0)
    z, logps = torch.rand(16, generator=gen), -torch.rand(16, generator=gen) / 2
    outside = _core_results(z, logps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = _core_results(z, logps)
    for a, b in zip(outside, inside, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    # bf16 inputs are computed on in float32 (the same numbers a caller would get by upcasting first)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        from_half = _core_results(z.bfloat16(), logps.bfloat16())
    upcast = _core_results(z.bfloat16().float(), logps.bfloat16().float())
    for a, b in zip(upcast, from_half, strict=True):
        assert b.dtype in (torch.float32, torch.float64) and torch.equal(a, b)


# ---------------------------------------------------------------- every forward pass sees the precision
class AutocastRecorder:
    """Forward pre-hooks on every decoder layer of each loaded base model: the autocast state each call saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, torch.dtype]] = []
        self.paused = False

    def hook(self, module, args) -> None:
        if not self.paused:
            self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))

    def attach(self, model):
        for module in model.modules():
            if type(module).__name__.endswith("DecoderLayer"):
                module.register_forward_pre_hook(self.hook)
        return model


def _method_setup(method: str, tmp_path) -> dict:
    if method == "mopo":
        return dict(dataset_path=write_jsonl(tmp_path / "d.jsonl", make_rows(4)), objectives=["helpful", "harmless"])
    if method == "modpo":
        return dict(dataset_path=write_jsonl(tmp_path / "d.jsonl", make_scored_rows(4)),
                    objectives=["helpful", "short"], weights=[0.7, 0.3])
    if method in ("ham", "sca", "ric"):
        return dict(dataset_path=write_jsonl(tmp_path / "d.jsonl", make_pointwise_rows(4)),
                    objectives=["helpful", "harmless"])
    common = dict(dataset_path=write_jsonl(tmp_path / "d.jsonl", PROMPTS), reward_functions=REWARDS,
                  max_completion_length=3)
    if method in ("rewarded_soups", "p_morl"):
        common.update(num_generations=2)
    if method == "p_morl":
        common.update(weights_per_prompt=2, normalization_prompts=1)
    if method == "odpo_soups":
        common.update(reward_normalization="none")
    return common


@pytest.mark.parametrize("method", sorted(available_methods()))
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_precision_reaches_every_forward_pass_of_every_trainer(method, precision, tmp_path, monkeypatch):
    import moalign.models as models
    import moalign.models.loading as loading
    from moalign.cli.main import main
    import moalign.models.multihead as multihead

    recorder = AutocastRecorder()
    original = loading.load_base_model
    monkeypatch.setattr(loading, "load_base_model", lambda *a, **k: recorder.attach(original(*a, **k)))
    monkeypatch.setattr(models, "load_base_model", loading.load_base_model)
    # the model's construction-time check of its backbone path is a structural check, not a training pass
    check = multihead._check_backbone_path

    def unrecorded_check(*args, **kwargs):
        recorder.paused = True
        try:
            return check(*args, **kwargs)
        finally:
            recorder.paused = False

    monkeypatch.setattr(multihead, "_check_backbone_path", unrecorded_check)
    config = write_config(tmp_path / "c.yaml", model_name_or_path=save_tiny_model(tmp_path / "tiny"),
                          output_dir=tmp_path / "out", max_steps=1, save_steps=100, per_device_train_batch_size=2,
                          lora_r=2, seed=0, precision=precision, **_method_setup(method, tmp_path),
                          **({} if method in ("rewarded_soups", "p_morl") else {"head_rank": 2}))  # GRPO: no heads
    assert main(["train", method, "--config", str(config)]) == 0
    assert recorder.seen, f"{method}: no forward pass was recorded"
    expected = (True, torch.bfloat16) if precision == "bf16" else None
    wrong = [s for s in recorder.seen if (s if expected else s[0]) != (expected or False)]
    assert not wrong, f"{method} at {precision}: {len(wrong)} of {len(recorder.seen)} forward passes saw {wrong[:3]}"


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_generation_runs_in_the_chosen_precision(precision):
    from moalign.eval.generate import GenerationSettings, generate_completions
    from moalign.eval.policies import Policy
    from moalign.models.testing import make_tiny_llama_and_tokenizer

    model, tokenizer = make_tiny_llama_and_tokenizer()
    recorder = AutocastRecorder()
    recorder.attach(model)
    settings = GenerationSettings(max_new_tokens=3, progress=False, precision=precision, use_chat_template=False)
    generate_completions(model, tokenizer, ["hello you", "a cat"], Policy.as_is(), settings)
    assert len(recorder.seen) >= 3
    assert all(s == (True, torch.bfloat16) for s in recorder.seen) if precision == "bf16" else \
        not any(s[0] for s in recorder.seen)


def _count_weight_casts(model, context, passes: int) -> int:
    """fp32 -> bf16 copies made while ``passes`` forward passes of ``model`` run inside one ``context``."""
    from torch.profiler import ProfilerActivity, profile

    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad(), context, profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(passes):
            model(input_ids=ids)
    return sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")


def test_generation_autocast_casts_frozen_weights_once_per_context():
    from moalign.models.testing import make_tiny_llama_and_tokenizer
    from moalign.precision import generation_autocast

    model, _ = make_tiny_llama_and_tokenizer()
    model.requires_grad_(False)  # frozen, as a base model under LoRA or a model loaded for inference
    num_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    plain = [_count_weight_casts(model, precision_autocast("bf16"), n) for n in (1, 4)]
    cached = [_count_weight_casts(model, generation_autocast("bf16", model), n) for n in (1, 4)]
    # plain autocast re-casts each frozen Linear weight on each of the 3 extra passes; the cached context does not
    assert (plain[1] - plain[0]) - (cached[1] - cached[0]) == 3 * num_linear
    model.requires_grad_(True)  # autocast's own cache for trainable weights: the same count
    assert [_count_weight_casts(model, precision_autocast("bf16"), n) for n in (1, 4)] == cached
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())  # restored


def test_generation_autocast_gives_the_same_numbers_and_restores_flags():
    from moalign.models.testing import make_tiny_llama_and_tokenizer
    from moalign.precision import generation_autocast

    model, _ = make_tiny_llama_and_tokenizer()
    model.requires_grad_(False)
    trainable = next(model.parameters())
    trainable.requires_grad_(True)  # a trainable weight keeps its flag
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        with precision_autocast("bf16"):
            reference = model(input_ids=ids).logits
            greedy_ref = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
        with generation_autocast("bf16", model):
            logits = model(input_ids=ids).logits
            greedy = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
        assert torch.equal(logits, reference) and torch.equal(greedy, greedy_ref)
        with pytest.raises(ValueError), generation_autocast("bf16", model):
            raise ValueError("inside")
    assert [p.requires_grad for p in model.parameters()].count(True) == 1 and trainable.requires_grad
    with pytest.raises(RuntimeError, match="no_grad"), generation_autocast("bf16", model):
        pass
    with generation_autocast("fp32", model):  # fp32: nothing to do, grad mode is not checked
        assert not torch.is_autocast_enabled("cpu")
