"""Loading base models; the real SmolLM2 check is slow (``pytest -m slow``)."""

import time
from pathlib import Path

import pytest
import torch

from moalign.models import loading
from moalign.models.testing import make_tiny_llama, make_tiny_tokenizer


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path))
    assert loading.smollm2_cache_dir() == tmp_path / "smollm2-135m-instruct"
    monkeypatch.delenv("MOALIGN_CACHE")
    assert loading.cache_root() == Path.home() / ".cache" / "moalign"


def test_smollm2_gguf_is_found_without_importing_the_package():
    import sys

    path = loading.smollm2_gguf_path()
    assert path.name == loading.SMOLLM2_GGUF_FILE and path.stat().st_size > 50_000_000
    assert loading.SMOLLM2_PACKAGE not in sys.modules


def test_cache_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "something.txt").write_text("not a model")
    with pytest.raises(FileExistsError, match="moalign_conversion_complete"):
        loading.ensure_smollm2_cache(tmp_path)


def test_load_base_model_and_tokenizer_from_a_local_folder(tmp_path):
    model = make_tiny_llama(seed=1)
    model.save_pretrained(str(tmp_path))
    tokenizer = make_tiny_tokenizer()
    tokenizer.pad_token = None
    tokenizer.save_pretrained(str(tmp_path))
    loaded = loading.load_base_model(str(tmp_path))
    assert not loaded.training and loaded.dtype == torch.float32
    for (name, p), (_, q) in zip(model.named_parameters(), loaded.named_parameters()):
        assert torch.equal(p, q), name
    reloaded_tokenizer = loading.load_tokenizer(str(tmp_path), padding_side="left")
    assert reloaded_tokenizer.pad_token == reloaded_tokenizer.eos_token == "<eos>"
    assert reloaded_tokenizer.padding_side == "left"


@pytest.mark.slow
def test_smollm2_loads_from_cache_and_generates(tmp_path_factory):
    """Real model: convert once (GGUF, ~30 s), reload from safetensors (~4 s), generate; prints the timings."""
    from moalign.models import MultiHeadCausalLM

    torch.set_num_threads(2)
    cache = loading.smollm2_cache_dir()
    start = time.perf_counter()
    loading.ensure_smollm2_cache()
    convert_s = time.perf_counter() - start
    start = time.perf_counter()
    model, tokenizer = loading.load_smollm2()
    load_s = time.perf_counter() - start
    assert model.config.name_or_path == loading.SMOLLM2_NAME
    assert model.config.vocab_size == 49152 and not hasattr(model.config, "quantization_config")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        plain = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    text = tokenizer.decode(plain[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"\nSmolLM2 cache {cache}: ensure {convert_s:.1f} s, load {load_s:.1f} s; greedy: {text!r}")
    assert "Paris" in text
    multi = MultiHeadCausalLM(model, num_heads=3)
    with torch.no_grad():
        for k in range(3):  # low-rank heads start as the base model: identical greedy text
            assert torch.equal(multi.generate(**inputs, head=k, max_new_tokens=20, do_sample=False), plain)
        steered = multi.generate(**inputs, steering_weights=[0.2, 0.3, 0.5], max_new_tokens=20, do_sample=False)
    assert torch.equal(steered, plain)


@pytest.mark.parametrize("name", ["smollm2", "SmolLM2", " SMOLLM2 ", "smollm2-135m-instruct", loading.SMOLLM2_NAME,
                                  "Moalign/SmolLM2-135M-Instruct"])
def test_smollm2_aliases_resolve_like_the_full_name(name, monkeypatch, tmp_path):
    """'smollm2' (any case) means the bundled model: same cache folder as SMOLLM2_NAME; nothing is converted."""
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path))
    assert loading.is_smollm2_name(name)
    assert loading.canonical_model_name(name) == loading.SMOLLM2_NAME
    expected = str(tmp_path / "smollm2-135m-instruct")
    assert loading.resolve_model_source(name, convert=False) == expected
    assert loading.resolve_model_source(loading.SMOLLM2_NAME, convert=False) == expected
    assert not (tmp_path / "smollm2-135m-instruct").exists()


@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2x", "gpt2", "org/smollm2"])
def test_other_names_are_passed_through(name):
    assert not loading.is_smollm2_name(name)
    assert loading.canonical_model_name(name) == name
    assert loading.resolve_model_source(name, convert=False) == name


def test_a_local_folder_named_smollm2_is_reached_as_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smollm2").mkdir()
    for name in ("./smollm2", str(tmp_path / "smollm2")):
        assert not loading.is_smollm2_name(name)
        assert loading.resolve_model_source(name) == name


@pytest.mark.parametrize("name", ["./no-such-model", "/no/such/model", "~/no-such-moalign-model"])
def test_a_missing_model_folder_is_a_clear_error_not_a_hub_lookup(name):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        loading.resolve_model_source(name)
    with pytest.raises(FileNotFoundError, match="model folder"):
        loading.load_tokenizer(name)


def test_alias_loads_model_and_tokenizer_from_the_cache(monkeypatch, tmp_path):
    """A completed cache (here: a tiny model standing in for SmolLM2) serves 'smollm2' for model and tokenizer."""
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path))
    cache = loading.smollm2_cache_dir()
    make_tiny_llama(seed=2).save_pretrained(str(cache))
    make_tiny_tokenizer().save_pretrained(str(cache))
    (cache / "moalign_conversion_complete").write_text("test stand-in\n")
    model = loading.load_base_model("SmolLM2")
    assert model.config.name_or_path == loading.SMOLLM2_NAME  # saved multi-head models record the full name
    tokenizer = loading.load_tokenizer("smollm2", padding_side="left")
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert len(tokenizer) == len(make_tiny_tokenizer())


@pytest.mark.slow
def test_smollm2_alias_loads_the_real_model():
    """Real model: 'smollm2' gives SmolLM2's tokenizer and weights (cached safetensors; GGUF conversion if missing)."""
    torch.set_num_threads(2)
    tokenizer = loading.load_tokenizer("smollm2")
    model = loading.load_base_model("smollm2")
    assert model.config.name_or_path == loading.SMOLLM2_NAME
    assert model.config.vocab_size == 49152 and len(tokenizer) == 49152
    full = loading.load_tokenizer(loading.SMOLLM2_NAME)
    text = "The capital of France is"
    assert tokenizer(text)["input_ids"] == full(text)["input_ids"]
