"""``moalign serve`` over real HTTP: answers equal ``load_policy(DIR).generate``, bad requests get 400 with a
message, 16 interleaved requests of mixed weights see only their own weights, the model loads once, and the
``moalign serve`` command serves from its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from moalign.inference import load_policy
from tests.inference.serve_helpers import PROMPTS, chat, request, running_server

MAX_TOKENS = 12
WEIGHTS = [(0.7, 0.3), (0.2, 0.8), (1.0, 0.0), (0.5, 0.5)]


@pytest.fixture(scope="module")
def served(folders):
    with running_server(folders["mopo_low_rank"], max_prompt_chars=200, max_new_tokens_limit=32) as (url, server):
        yield url, server


@pytest.fixture(scope="module")
def reference(folders):
    """A second, independent policy of the same folder: what ``generate`` answers without the server."""
    return load_policy(folders["mopo_low_rank"])


def expected(reference, prompt: str, weights, max_tokens: int = MAX_TOKENS) -> str:
    return reference.generate([prompt], weights, max_new_tokens=max_tokens, precision="fp32")[0]


def test_models_and_health_describe_the_policy(served):
    url, server = served
    status, models = request(url, "/v1/models")
    assert status == 200 and models["object"] == "list"
    (entry,) = models["data"]
    assert entry["id"] == server.model_id == "mopo_lr" and entry["object"] == "model"
    assert entry["moalign"]["weight_names"] == ["helpful", "short"] and entry["moalign"]["method"] == "mopo"
    status, health = request(url, "/health")
    assert status == 200 and health["status"] == "ok" and health["objectives"] == ["helpful", "short"]
    status, page = request(url, "/")
    assert status == 200 and "<title>moalign steering playground</title>" in page


@pytest.mark.parametrize("weights", WEIGHTS)
def test_greedy_answer_equals_generate(served, reference, weights):
    url, _ = served
    status, body = chat(url, PROMPTS[0], weights, model="mopo_lr")
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["model"] == "mopo_lr"
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": expected(reference, PROMPTS[0], weights)}
    assert choice["finish_reason"] in ("stop", "length")
    assert body["moalign"]["weights"] == list(weights)
    usage = body["usage"]
    prompt_text = reference.prompt_texts([PROMPTS[0]], weights)[0]
    assert usage["prompt_tokens"] == len(reference.tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if choice["finish_reason"] == "length":
        assert usage["completion_tokens"] == MAX_TOKENS
    else:
        assert 1 <= usage["completion_tokens"] <= MAX_TOKENS


def test_weights_change_the_answer_and_default_to_equal_weights(served, reference):
    url, _ = served
    answers = {w: chat(url, PROMPTS[1], w)[1]["choices"][0]["message"]["content"] for w in WEIGHTS}
    assert len(set(answers.values())) > 1, "the tiny heads answer alike at every weight: the test would be vacuous"
    status, body = chat(url, PROMPTS[1])  # no weights: equal weights
    assert status == 200 and body["moalign"]["weights"] == [0.5, 0.5]
    assert body["choices"][0]["message"]["content"] == answers[(0.5, 0.5)]


def test_conversation_with_system_message_and_length_cut(served, reference):
    url, _ = served
    messages = [{"role": "system", "content": "be kind"}, {"role": "user", "content": PROMPTS[2]}]
    status, body = request(url, "/v1/chat/completions", {"messages": messages, "weights": [0.3, 0.7],
                                                         "max_completion_tokens": 3})
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == reference.generate([messages], [0.3, 0.7], max_new_tokens=3,
                                                                          precision="fp32")[0]
    if body["choices"][0]["finish_reason"] == "length":
        assert body["usage"]["completion_tokens"] == 3


LONG = "hello " * 40  # 240 characters > max_prompt_chars 200
BAD_REQUESTS = [
    ({"weights": [1.0]}, "got 1 weight(s) [1.0]", "weights"),
    ({"weights": [0.5, 0.3, 0.2]}, "needs 2", "weights"),
    ({"weights": [1.2, -0.2]}, "negative weight for short", "weights"),
    ({"weights": [0.6, 0.6]}, "sum to 1.2", "weights"),
    ({"weights": ["0.5", 0.5]}, "weights.0: Input should be a valid number", "weights"),
    ({"foo": 1}, "unknown field 'foo'", "foo"),
    ({"messages": [{"role": "user", "content": "hi", "name": "x"}]}, "unknown field 'messages.0.name'", "messages"),
    ({"messages": [{"role": "user", "content": LONG}]}, "240 characters; this server accepts at most 200",
     "messages"),
    ({"messages": []}, "messages", "messages"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message must have role 'user'", "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role", "messages"),
    ({"max_tokens": 0}, "max_tokens=0 must be between 1 and 32", "max_tokens"),
    ({"max_tokens": 33}, "max_tokens=33 must be between 1 and 32", "max_tokens"),
    ({"max_tokens": "5"}, "max_tokens: Input should be a valid integer", "max_tokens"),
    ({"max_tokens": 2.5}, "max_tokens", "max_tokens"),
    ({"temperature": -1}, "temperature=-1.0 must be between 0 (greedy) and 2", "temperature"),
    ({"top_p": 0}, "top_p=0.0 must be in (0, 1]", "top_p"),
    ({"stream": True}, "stream=true is not supported", "stream"),
    ({"n": 2}, "one choice per request", "n"),
    ({"model": "gpt-4"}, "model 'gpt-4' is not served here; this server serves 'mopo_lr'", "model"),
]


@pytest.mark.parametrize("change,message,param", BAD_REQUESTS, ids=[m for _, m, _ in BAD_REQUESTS])
def test_bad_request_gets_400_with_a_message(served, change, message, param):
    url, server = served
    served_before = server.requests_served
    body = {"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 4, "weights": [0.5, 0.5], **change}
    status, answer = request(url, "/v1/chat/completions", body)
    assert status == 400, answer
    error = answer["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error" and error["param"] == param
    assert server.requests_served == served_before  # refused before generating


def test_missing_messages_and_broken_json_get_400(served):
    url, _ = served
    status, answer = request(url, "/v1/chat/completions", {"weights": [0.5, 0.5]})
    assert status == 400 and "missing field 'messages'" in answer["error"]["message"]
    status, answer = request(url, "/v1/chat/completions", raw=b'{"messages": [')
    assert status == 400 and "not valid JSON" in answer["error"]["message"]


def test_conditioned_method_refuses_weights_off_its_grid(folders):
    with running_server(folders["mo_odpo"]) as (url, _):
        status, answer = chat(url, PROMPTS[0], [0.25, 0.75], max_tokens=2)
        assert status == 400 and "accepts only that grid" in answer["error"]["message"]
        status, models = request(url, "/v1/models")
        assert models["data"][0]["moalign"]["weight_step"] == pytest.approx(0.1)
        assert chat(url, PROMPTS[0], [0.3, 0.7], max_tokens=2)[0] == 200


def test_sixteen_interleaved_requests_see_only_their_own_weights(served, reference):
    url, server = served
    model = server.policy.family.model
    jobs = [(PROMPTS[i % len(PROMPTS)], WEIGHTS[(i + i // 4) % len(WEIGHTS)]) for i in range(16)]
    sequential = {job: expected(reference, *job) for job in set(jobs)}
    assert len({sequential[j] for j in jobs}) > 2  # the answers differ by weights: a mix-up would show
    start = threading.Barrier(16)

    def send(job):
        start.wait()
        return chat(url, job[0], job[1])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, jobs))
    for job, (status, body) in zip(jobs, answers):
        assert status == 200, body
        assert body["moalign"]["weights"] == list(job[1])
        assert body["choices"][0]["message"]["content"] == sequential[job], job
    assert server.policy.family.model is model, "the model was reloaded"
    assert model.output.steering is None  # every request restored the model


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_moalign_serve_command(folders, reference):
    port = _free_port()
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "moalign.cli.main", "serve", "--model",
                             str(folders["mopo_low_rank"]), "--port", str(port), "--max_new_tokens_limit", "16",
                             "--precision", "fp32"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if request(url, "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "moalign serve did not answer /health within 120 s"
            time.sleep(0.3)
        status, body = chat(url, PROMPTS[3], [0.7, 0.3])
        assert status == 200 and body["choices"][0]["message"]["content"] == expected(reference, PROMPTS[3],
                                                                                      (0.7, 0.3))
        assert chat(url, PROMPTS[3], [0.7, 0.3], max_tokens=17)[0] == 400
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "moalign serve: mopo model 'mopo_lr'" in out


@pytest.mark.parametrize("name,weights", [("p_morl", (0.4, 0.6)), ("soup", (0.3, 0.7)), ("sca", (0.3, 0.7)),
                                          ("modpo", (0.6, 0.4)), ("ric", (0.6, 0.4))])
def test_every_family_answers_as_generate(folders, name, weights):
    """Soups, SCA between heads, MODPO's nearest model (with its note), the conditioned methods."""
    policy = load_policy(folders[name])
    messages = [{"role": "system", "content": "be kind"}, {"role": "user", "content": PROMPTS[0]}]
    prompt = messages if policy.family.use_chat_template else "".join(m["content"] for m in messages)
    want = policy.generate([prompt], weights, max_new_tokens=6, precision="fp32")[0]
    with running_server(folders[name]) as (url, _):
        status, body = request(url, "/v1/chat/completions", {"messages": messages, "weights": list(weights),
                                                             "max_tokens": 6})
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == want
    if name in ("modpo", "sca"):
        assert body["moalign"]["note"]  # the nearest trained model / the two steered heads are named


def test_model_without_chat_template_continues_the_contents(tiny_base, tmp_path):
    """A model trained on raw text (no chat template) continues the messages' contents joined, as its exported
    chat template renders them."""
    from tests.inference.conftest import OBJECTIVES, save_multihead

    folder = save_multihead(tmp_path / "raw", tiny_base, OBJECTIVES, "mopo", 7, chat=False)
    policy = load_policy(folder)
    assert not policy.family.use_chat_template
    messages = [{"role": "system", "content": "be kind . "}, {"role": "user", "content": PROMPTS[0]}]
    want = policy.generate(["be kind . " + PROMPTS[0]], (0.7, 0.3), max_new_tokens=6, precision="fp32")[0]
    with running_server(folder) as (url, _):
        status, body = request(url, "/v1/chat/completions", {"messages": messages, "weights": [0.7, 0.3],
                                                             "max_tokens": 6})
    assert status == 200 and body["choices"][0]["message"]["content"] == want
