"""Backends: the OpenAI-compatible client against a real HTTP server on localhost, the local
backend on a tiny Llama built in-process (no download), and the named configs."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r2ta.backends import BackendConfig, BackendError, LocalBackend, OpenAIBackend, get_backend, is_looping, load_configs

# -- a chat-completions server on localhost ---------------------------------------------


class _ChatHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": {"message": "not found"}})
        if server.fail_next > 0:
            server.fail_next -= 1
            return self._send(503, {"error": {"message": "overloaded"}})
        if server.key and self.headers.get("Authorization") != f"Bearer {server.key}":
            return self._send(401, {"error": {"message": "bad key"}})
        user = body["messages"][-1]["content"]
        words = user.split()[: body["max_tokens"]]
        reply = "ECHO " + " ".join(words)
        if "structured_outputs" in body or "guided_regex" in body:  # as vLLM decodes under a regex
            reply = server.regex_reply
        self._send(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(user.split()), "completion_tokens": len(words) + 1},
            },
        )

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    server.requests, server.fail_next, server.key, server.regex_reply = [], 0, None, None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _openai(server, **kw) -> OpenAIBackend:
    host, port = server.server_address
    return OpenAIBackend(BackendConfig(kind="openai", base_url=f"http://{host}:{port}/v1", model="tiny-chat", **kw))


def _chat(text):
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def test_openai_backend_talks_chat_completions(chat_server):
    backend = _openai(chat_server, retries=0)
    gens = backend.generate([_chat("one two three"), _chat("four five")], max_new_tokens=2)
    assert [g.text for g in gens] == ["ECHO one two", "ECHO four five"]  # order kept despite parallel requests
    assert gens[0].prompt_tokens == 3 and gens[0].completion_tokens == 3 and gens[0].finish_reason == "stop"
    assert gens[0].latency_s > 0
    req = sorted(chat_server.requests, key=lambda r: r["body"]["messages"][1]["content"])[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "tiny-chat" and req["body"]["max_tokens"] == 2 and req["body"]["temperature"] == 0.0
    assert req["body"]["messages"] == _chat("four five")
    assert backend.id == "tiny-chat"


def test_openai_backend_continues_an_answer_only_where_the_server_can(chat_server):
    plain = _openai(chat_server, retries=0)
    assert not plain.can_continue
    with pytest.raises(BackendError, match="assistant_prefill"):
        plain.generate([_chat("one")], prefixes=["Step 1 [A]: x -> ok\nVERDICT:\n"])
    vllm = _openai(chat_server, retries=0, assistant_prefill=True)
    assert vllm.can_continue and get_backend("vllm").can_continue
    gens = vllm.generate([_chat("one"), _chat("two")], max_new_tokens=3, prefixes=["so far one", "so far two"])
    assert [g.text for g in gens] == ["ECHO so far one", "ECHO so far two"]  # the echo server echoes the last message
    body = sorted(chat_server.requests, key=lambda r: r["body"]["messages"][-1]["content"])[0]["body"]
    assert body["messages"] == [*_chat("one"), {"role": "assistant", "content": "so far one"}]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    with pytest.raises(ValueError, match="1 prefixes for 2 prompts"):
        vllm.generate([_chat("one"), _chat("two")], prefixes=["x"])


def test_openai_backend_sends_the_verdict_grammar_as_a_regex(chat_server):
    import re

    from fixtures_eerd import company

    from r2ta.backends import Generation, ask_for_verdicts
    from r2ta.prompting import parse_output

    diagram = company()
    with pytest.raises(ValueError, match="needs assistant_prefill"):
        _openai(chat_server, verdict_grammar=True)  # it could never continue an answer from VERDICT:
    vllm = _openai(chat_server, retries=0, assistant_prefill=True, verdict_grammar=True)
    assert vllm.id == "tiny-chat+grammar" and get_backend("vllm", verdict_grammar=True).id.endswith("+grammar")
    # the server's answer was cut by max_tokens inside its second line: that line goes
    line = "MISTAKE: participation | WORKS_FOR, EMPLOYEE | every employee works for one department"
    chat_server.regex_reply = line + "\nMISTAKE: missing_key | EMPL"
    steps = "Step 1 [EMPLOYEE]: the key is Ssn -> ok\n"
    gens = [Generation(text=steps + "Step 2 [WOR", finish_reason="length")]  # the answer ran out of budget
    asked = ask_for_verdicts(vllm, [_chat("steps")], gens, 64, [diagram.element_ids()])
    assert asked[0][0] == len(steps)  # asked for after the model's complete lines
    assert gens[0].text == steps + "VERDICT:\n" + line + "\n"
    assert parse_output(gens[0].text, diagram).valid
    body = chat_server.requests[-1]["body"]
    assert body["continue_final_message"] is True and body["max_tokens"] == 64
    regex = re.compile(body["structured_outputs"]["regex"])
    assert regex.fullmatch("NONE") and regex.fullmatch(line) and regex.fullmatch(line + "\n" + line)
    assert not regex.fullmatch("MISTAKE: no_such_category | EMPLOYEE | x")
    assert not regex.fullmatch("MISTAKE: participation | NOT_IN_THE_DIAGRAM | x")
    assert not regex.fullmatch("Step 7 [EMPLOYEE]: more steps -> ok")
    assert "guided_regex" not in body
    # older vLLM (< 0.12) reads guided_regex
    old = _openai(chat_server, retries=0, assistant_prefill=True, verdict_grammar=True, grammar_field="guided_regex")
    old.generate([_chat("x")], prefixes=["VERDICT:\n"], grammars=[diagram.element_ids()])
    body = chat_server.requests[-1]["body"]
    assert "structured_outputs" not in body and re.compile(body["guided_regex"]).fullmatch(line)
    with pytest.raises(ValueError, match="1 grammars for 2 prompts"):
        old.generate([_chat("x"), _chat("y")], prefixes=["a", "b"], grammars=[["A"]])


def test_openai_backend_key_comes_from_the_named_env_var(chat_server, monkeypatch):
    chat_server.key = "s3cret"
    backend = _openai(chat_server, api_key_env="R2TA_TEST_KEY", retries=0)
    monkeypatch.setenv("R2TA_TEST_KEY", "s3cret")
    assert backend.generate([_chat("hi")])[0].text == "ECHO hi"
    assert chat_server.requests[-1]["auth"] == "Bearer s3cret"
    assert "s3cret" not in backend.config.model_dump_json()  # the key is never part of the config
    monkeypatch.setenv("R2TA_TEST_KEY", "wrong")
    with pytest.raises(BackendError, match="HTTP 401"):
        backend.generate([_chat("hi")])


def test_openai_backend_retries_overload_then_reports_errors(chat_server):
    chat_server.fail_next = 1
    assert _openai(chat_server, retries=1).generate([_chat("again")])[0].text == "ECHO again"
    chat_server.fail_next = 5
    with pytest.raises(BackendError, match="HTTP 503"):
        _openai(chat_server, retries=1).generate([_chat("again")])


def test_openai_backend_unreachable_server_says_so():
    backend = OpenAIBackend(BackendConfig(kind="openai", base_url="http://127.0.0.1:9/v1", model="m", retries=0, timeout_s=2))
    with pytest.raises(BackendError, match="is the server running"):
        backend.generate([_chat("hi")])


# -- named configs ----------------------------------------------------------------------


def test_named_configs_and_yaml_overrides(tmp_path, monkeypatch):
    configs = load_configs()
    assert {"embedded", "vllm", "ollama", "openai"} <= set(configs)
    assert configs["embedded"].kind == "local" and configs["vllm"].base_url == "http://localhost:8000/v1"
    path = tmp_path / "backends.yaml"
    path.write_text("vllm:\n  base_url: http://gpu:8000/v1\n  model: big\nmine:\n  kind: local\n  model: /m\n  batch_size: 3\n")
    monkeypatch.setenv("R2TA_BACKENDS_FILE", str(path))
    configs = load_configs()
    assert configs["vllm"].base_url == "http://gpu:8000/v1" and configs["vllm"].model == "big" and configs["vllm"].kind == "openai"
    assert configs["mine"].batch_size == 3
    assert get_backend("vllm").id == "big"
    path.write_text("bad:\n  kind: openai\n  model: m\n  base_url: localhost:1\n")
    with pytest.raises(BackendError, match="base_url must start with http"):
        load_configs()
    path.write_text("bad:\n  kind: local\n  model: m\n  batch_sise: 3\n")
    with pytest.raises(BackendError, match="batch_sise"):
        load_configs()
    path.write_text("{}\n")
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        get_backend("nope")


# -- a tiny Llama in-process ------------------------------------------------------------

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_llama():
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    corpus = ["Step 1 [EMPLOYEE]: the key is Ssn -> ok", "VERDICT:", "MISTAKE: cardinality | WORKS_FOR | many"] * 20
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|im_start|>", "<|im_end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", bos_token="<|im_start|>")
    tok.chat_template = CHATML
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
    )
    model = LlamaForCausalLM(cfg).eval()
    return model, tok


LONG_SYSTEM = {"role": "system", "content": "Step 1 [EMPLOYEE]: the key is Ssn -> ok. " * 6}  # > 32 shared tokens
FIVE_USERS = ("VERDICT", "MISTAKE: cardinality | WORKS_FOR", "x", "Step 1", "a much longer prompt about the WORKS_FOR relationship")


def _with_system(users) -> list:
    """One chat per user message, all starting with the same long system message."""
    return [[LONG_SYSTEM, {"role": "user", "content": text}] for text in users]


def _local(tiny_llama, **kw) -> LocalBackend:
    model, tok = tiny_llama
    return LocalBackend(BackendConfig(kind="local", model="tiny", device="cpu", **kw), model=model, tokenizer=tok)


def test_local_backend_batched_equals_one_at_a_time(tiny_llama):
    prompts = [_chat("Step 1"), _chat("a much longer prompt about the WORKS_FOR relationship and EMPLOYEE keys"), _chat("VERDICT")]
    batched = _local(tiny_llama, batch_size=3).generate(prompts, max_new_tokens=12)
    single = [_local(tiny_llama, batch_size=1).generate([p], max_new_tokens=12)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]  # left padding changes nothing
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]
    assert batched[0].prompt_tokens < batched[1].prompt_tokens  # padding is not counted
    for g in batched:
        assert 1 <= g.completion_tokens <= 12
        assert g.finish_reason in ("stop", "length")
        assert (g.finish_reason == "length") == (g.completion_tokens == 12 and "<|im_end|>" not in g.text)


def test_local_backend_ends_each_row_at_its_own_budget(tiny_llama):
    # one budget per prompt: a batch runs to its largest, every other row ends at its own, exactly as that prompt
    # alone under that budget would (greedy)
    prompts = [_chat("Step 1"), _chat("a much longer prompt about the WORKS_FOR relationship and EMPLOYEE keys"), _chat("VERDICT")]
    limits = [3, 12, 7]
    backend = _local(tiny_llama, batch_size=3, stop_on_repetition=False)
    batched = backend.generate(prompts, max_new_tokens=limits)
    alone = [backend.generate([p], max_new_tokens=n)[0] for p, n in zip(prompts, limits)]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [(g.completion_tokens, g.finish_reason) for g in batched] == [(g.completion_tokens, g.finish_reason) for g in alone]
    for g, n in zip(batched, limits):
        assert g.completion_tokens <= n
        assert (g.finish_reason == "length") == (g.completion_tokens == n)
    assert any(g.finish_reason == "length" for g in batched[:1])  # the 3-token row was cut, not left to run to 12
    with pytest.raises(ValueError, match="2 token budgets for 3 prompts"):
        backend.generate(prompts, max_new_tokens=[4, 4])


def test_openai_backend_sends_each_prompt_its_own_budget(chat_server):
    gens = _openai(chat_server, retries=0).generate([_chat("one two three"), _chat("four five")], max_new_tokens=[2, 5])
    assert len(gens) == 2
    sent = {r["body"]["messages"][1]["content"]: r["body"]["max_tokens"] for r in chat_server.requests}
    assert sent == {"one two three": 2, "four five": 5}


def test_a_local_backend_times_its_models_load_once(tiny_llama, tmp_path):
    model, tok = tiny_llama
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    backend = LocalBackend(BackendConfig(kind="local", model=str(tmp_path / "m"), device="cpu"))
    assert backend.load_s == 0.0  # loads on its first answer
    backend.generate([_chat("Step 1")], max_new_tokens=4)
    loaded = backend.load_s
    assert loaded > 0
    backend.generate([_chat("VERDICT")], max_new_tokens=4)
    assert backend.load_s == loaded
    assert _local(tiny_llama).load_s == 0.0  # a model handed in was loaded by its caller


def test_local_backend_is_greedy_and_deterministic_by_default(tiny_llama):
    backend = _local(tiny_llama, batch_size=2)
    a = backend.generate([_chat("Step 1"), _chat("VERDICT")], max_new_tokens=8)
    b = backend.generate([_chat("Step 1"), _chat("VERDICT")], max_new_tokens=8)
    assert [g.text for g in a] == [g.text for g in b]
    assert backend.id == "tiny" and backend.device == "cpu"
    assert backend.generate([], max_new_tokens=8) == []


def test_local_backend_continues_an_answer_right_after_the_given_text(tiny_llama):
    import torch

    model, tok = tiny_llama
    backend = _local(tiny_llama, batch_size=2, stop_on_repetition=False)
    assert backend.can_continue
    prompts = [_chat("Step 1"), _chat("a longer prompt about WORKS_FOR")]
    prefixes = ["Step 1 [EMPLOYEE]: ok\nVERDICT:\n", "VERDICT:\n"]
    gens = backend.generate(prompts, max_new_tokens=6, prefixes=prefixes)
    for prompt, prefix, g in zip(prompts, prefixes, gens):
        # the same as greedy decoding from the rendered chat with the prefix as the start of the answer
        ids = tok(backend.render_prompt(prompt) + prefix, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            seq = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
        new = seq[0, ids.shape[1]:].tolist()
        new = new[: new.index(tok.eos_token_id)] if tok.eos_token_id in new else new
        assert g.text == tok.decode(new, skip_special_tokens=True)
        assert g.prompt_tokens == ids.shape[1]  # the prefix counts as prompt, not as completion
    with pytest.raises(ValueError, match="1 prefixes for 2 prompts"):
        backend.generate(prompts, prefixes=["x"])


def test_local_backend_missing_model_says_what_to_do(tmp_path):
    backend = LocalBackend(BackendConfig(kind="local", model=str(tmp_path / "nothing-here"), device="cpu"))
    with pytest.raises(BackendError, match="cannot load model"):
        backend.load()


def test_is_looping_catches_the_loops_small_models_fall_into():
    numbered = "".join(f"{i}. Each customer has a customer name and a customer number.\n" for i in range(1, 6))
    assert is_looping(numbered)
    assert is_looping("The entity is a company, a company, a company, a company, a company")
    assert is_looping("MISTAKE: participation | PLAYS_IN (1,1)\n" * 5)
    from reasoning_fixtures import CORRECT_TRACE

    assert not is_looping(CORRECT_TRACE + "\n")
    assert not is_looping("Step 1 [A]: x -> ok\nStep 2 [B]: x -> ok\nStep 3 [C]: x -> ok\nStep 4 [D]: x -> ok\n")


def test_local_backend_stops_a_looping_row_and_says_so(tiny_llama):
    prompts = [_chat("Step 1"), _chat("VERDICT")]
    free = _local(tiny_llama, batch_size=2, stop_on_repetition=False).generate(prompts, max_new_tokens=120)
    stopped = _local(tiny_llama, batch_size=2).generate(prompts, max_new_tokens=120)
    assert any(is_looping(g.text) for g in free)  # a random tiny model loops at once
    for f, s in zip(free, stopped):
        if is_looping(f.text) and f.finish_reason == "length":
            assert s.finish_reason == "repetition"
            assert f.text.startswith(s.text) and s.completion_tokens < f.completion_tokens


def test_shared_prefix_cache_changes_nothing_but_speed(tiny_llama):
    prompts = _with_system(("VERDICT", "MISTAKE: cardinality", "Step 2 [WORKS_FOR]"))
    backend = _local(tiny_llama, batch_size=1, stop_on_repetition=False)
    assert backend._shared_prefix([backend.render_prompt(p) for p in prompts])[0] > 32
    cached = backend.generate(prompts, max_new_tokens=10)
    plain = [backend.generate([p], max_new_tokens=10)[0] for p in prompts]  # one prompt: no shared prefix
    assert [g.text for g in cached] == [g.text for g in plain]
    assert [g.prompt_tokens for g in cached] == [g.prompt_tokens for g in plain]


@pytest.mark.parametrize("keep_cache_mb", [0, 64])
def test_rows_prefill_gives_the_tokens_of_the_padded_batch(tiny_llama, monkeypatch, keep_cache_mb):
    """prefill: rows (each prompt encoded alone, the shared system message once, r2ta.kv_cache) against
    the one padded forward: the same greedy tokens, counts and finish reasons, continuations included
    (with the rows of the first call kept, the second call's prompts start from their caches)."""
    prompts = _with_system(FIVE_USERS)
    prefixes = ["", "Step 1 [EMPLOYEE]: ok\n", "VERDICT:\n", "", "Step 2"]
    import r2ta.kv_cache

    calls = []
    real = r2ta.kv_cache.prefill_rows
    monkeypatch.setattr(r2ta.kv_cache, "prefill_rows", lambda *a, **kw: calls.append(kw["prefix"]) or real(*a, **kw))
    results = {}
    for mode in ("rows", "batch"):
        backend = _local(tiny_llama, batch_size=3, prefill=mode, stop_on_repetition=False, keep_cache_mb=keep_cache_mb)
        results[mode] = [backend.generate(prompts, max_new_tokens=20), backend.generate(prompts, max_new_tokens=9, prefixes=prefixes)]
    for rows, batch in zip(results["rows"], results["batch"]):
        assert [(g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason) for g in rows] == [
            (g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason) for g in batch
        ]
    assert any(g.completion_tokens == 20 for g in results["rows"][0])  # some rows decode to the end
    # rows: two calls of two batches each, the system message encoded once a call (without one: the test above);
    # with rows kept, every prompt of the second call continues one of the first's: no system message to encode
    assert len(calls) == 4 and all(p is not None and p[0] > 32 for p in calls[: 4 if keep_cache_mb == 0 else 2])
    assert keep_cache_mb == 0 or calls[2:] == [None, None]
    with pytest.raises(ValueError):
        BackendConfig(kind="local", model="tiny", prefill="sometimes")


def test_asking_for_verdicts_starts_from_the_cache_of_the_answers_it_continues(tiny_llama):
    """R2tA's second call (the verdict an answer did not reach) on a backend that kept the first call's rows:
    the same text and counts as encoding every prompt whole, with each asked-for row started from its answer's cache."""
    from r2ta.backends import ask_for_verdicts

    prompts = _with_system(FIVE_USERS)
    runs = {}
    for keep in (0, 64):
        backend = _local(tiny_llama, batch_size=3, prefill="rows", keep_cache_mb=keep)
        first = backend.generate(prompts, max_new_tokens=40)
        asked = ask_for_verdicts(backend, prompts, first, verdict_tokens=10)
        runs[keep] = (backend, first, asked)
    (_, plain, plain_asked), (kept_backend, reused, reused_asked) = runs[0], runs[64]
    assert len(reused_asked) >= 3 and reused_asked == plain_asked  # most rows asked for; same positions, same counts
    assert [(g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason) for g in reused] == [
        (g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason) for g in plain
    ]
    kept = kept_backend._kept
    assert kept.rows_reused == len(reused_asked)
    # each asked-for row reused its prompt and at least part of its answer (the prompts alone: the sum below)
    prompt_tokens = sum(reused[k].prompt_tokens - 1 for k in reused_asked)
    assert kept.tokens_reused > prompt_tokens
    assert runs[0][0]._kept is None  # keep_cache_mb: 0 keeps nothing
    # the cache a continuation starts from is the one encoding it whole gives (up to float rounding)
    import torch

    from r2ta.kv_cache import prefill_rows

    model, tok = tiny_llama
    tok.padding_side = "left"
    texts = [kept_backend.render_prompt(p) + g.text[: len(g.text) // 2] + "\nVERDICT:\n" for p, g in zip(prompts, reused)]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    before = kept.rows_reused
    started = prefill_rows(model, enc["input_ids"], enc["attention_mask"], reserve=0, kept=kept)
    assert kept.rows_reused == before + len(prompts)
    whole = prefill_rows(model, enc["input_ids"], enc["attention_mask"], reserve=0)
    for a, b in zip(started.layers, whole.layers):
        assert torch.allclose(a.keys, b.keys, atol=1e-5) and torch.allclose(a.values, b.values, atol=1e-5)


def test_kept_rows_hold_one_call_within_their_budget_and_match_the_longest_start():
    import torch

    from r2ta.kv_cache import KeptRows

    def layers(n):  # one layer, 2 heads, n positions, 4 dims: keys and values 2 * (2 * n * 4) * 4 bytes
        return [(torch.full((2, n, 4), float(n)), torch.full((2, n, 4), -float(n)))]

    kept = KeptRows(budget_bytes=2 * 2 * 10 * 4 * 4 * 2)  # two rows of 10 tokens
    kept.start_call([[0, 1, 2]])
    kept.add(list(range(10)), layers(10), prompt=4)
    kept.add([0, 1, 2, 7, 7, 7, 7, 7, 7], layers(9), prompt=4)
    assert kept.match([0, 1, 2, 3, 4, 99])[0] == 5 and kept.match([0, 1, 2, 7, 7])[0] == 5
    assert kept.match([5, 1, 2]) == (0, None)
    n, found = kept.match([0, 1, 2, 7, 9])
    assert n == 4 and found[0][0][0, 0, 0] == 9.0
    kept.add([3] * 10, layers(10))  # past the budget: the oldest goes
    assert len(kept) == 2 and kept.match([0, 1, 2, 3])[0] == 3 and kept.match([3, 3])[0] == 2
    kept.add(list(range(40)), layers(40))  # larger than the whole budget: not kept, nothing dropped
    assert len(kept) == 2 and kept.bytes <= kept.budget
    with pytest.raises(ValueError, match="other lengths"):
        kept.add([1, 2], layers(3))
    # the next call continues the row [0 1 2 7 ...] (holds its 4-token prompt): the [3 3 ...] row goes at once
    kept.start_call([[0, 1, 2, 7, 7, 8], [5, 5, 5, 5, 5]])
    assert len(kept) == 1 and kept.match([0, 1, 2, 7, 7, 8])[0] == 5
    kept.add([5] * 6, layers(6))
    kept.drop_older()  # the call's prompts are encoded: only its own rows stay
    assert len(kept) == 1 and kept.match([5, 5])[0] == 2 and kept.match([0, 1, 2, 7])[0] == 0
    assert kept.bytes == 2 * 6 * 4 * 4 * 2  # keys and values, 2 heads x 6 positions x 4 dims x 4 bytes
    kept.clear()
    assert len(kept) == 0 and kept.bytes == 0


def test_prefill_rows_cache_grows_past_its_reserve_and_refuses_right_padding(tiny_llama):
    import torch

    from r2ta.kv_cache import GrowingLayer, prefill_rows

    model, tok = tiny_llama
    tok.padding_side = "left"
    tok.pad_token = tok.pad_token or tok.eos_token
    enc = tok(["Step 1 [EMPLOYEE]: the key is Ssn", "VERDICT:"], return_tensors="pt", padding=True, add_special_tokens=False)
    greedy = {"max_new_tokens": 15, "min_new_tokens": 15, "do_sample": False, "pad_token_id": tok.pad_token_id}
    with torch.inference_mode():
        plain = model.generate(**enc, **greedy)
        cache = prefill_rows(model, enc["input_ids"], enc["attention_mask"], reserve=0)  # no room: grows as it goes
        assert cache.get_seq_length() == enc["input_ids"].shape[1] - 1
        grown = model.generate(**enc, past_key_values=cache, **greedy)
    assert torch.equal(plain, grown)
    layer = cache.layers[0]
    assert isinstance(layer, GrowingLayer) and layer.get_seq_length() == grown.shape[1] - 1
    assert layer._k.shape[2] >= layer.get_seq_length() and layer.keys.data_ptr() == layer._k.data_ptr()  # a view
    kept = layer.keys[1].clone()
    layer.batch_select_indices(torch.tensor([1]))
    layer.crop(-3)
    assert torch.equal(layer.keys[0], kept[:, :-3]) and layer.get_seq_length() == kept.shape[1] - 3
    tok.padding_side = "right"
    right = tok(["Step 1 [EMPLOYEE]: the key is Ssn", "VERDICT:"], return_tensors="pt", padding=True, add_special_tokens=False)
    tok.padding_side = "left"
    with pytest.raises(ValueError, match="left-padded"):
        prefill_rows(model, right["input_ids"], right["attention_mask"], reserve=4)


def test_a_model_with_a_sliding_window_keeps_the_padded_batch(tiny_llama):
    """A cache that is not plain full attention cannot be laid out row by row: auto falls back to the padded
    batch (same tokens as asking for it), an explicit prefill: rows says what to use instead."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    _, tok = tiny_llama
    torch.manual_seed(0)
    cfg = MistralConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, sliding_window=6, eos_token_id=tok.eos_token_id,
    )
    windowed = (MistralForCausalLM(cfg).eval(), tok)
    prompts = [_chat("Step 1"), _chat("a much longer prompt about the WORKS_FOR relationship and EMPLOYEE keys")]
    backend = _local(windowed, batch_size=2, stop_on_repetition=False)
    auto = backend.generate(prompts, max_new_tokens=8)
    assert backend._rows_unsupported  # found once, not tried again on every call
    batch = _local(windowed, batch_size=2, stop_on_repetition=False, prefill="batch").generate(prompts, max_new_tokens=8)
    assert [g.text for g in auto] == [g.text for g in batch]
    with pytest.raises(BackendError, match="use prefill: batch"):
        _local(windowed, batch_size=2, prefill="rows").generate(prompts, max_new_tokens=8)


def test_a_local_model_on_a_cpu_follows_the_idle_cores_between_batches(tiny_llama, monkeypatch):
    """Its threads are looked at again before a batch (once in THREAD_RECHECK_S), not only at its load: a job that
    started while another ended takes the freed core, and the config's threads are kept as they are."""
    import time

    import torch

    import r2ta.backends

    model, _ = tiny_llama
    before = torch.get_num_threads()
    seen: list[int] = []
    generate = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: seen.append(torch.get_num_threads()) or generate(**kw))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("r2ta.cpu.usable_cores", lambda: 2)
    monkeypatch.setattr(r2ta.backends, "THREAD_RECHECK_S", 0.0)
    looks = iter([0.1, 1.96, 1.96])  # both cores busy, then free
    monkeypatch.setattr(r2ta.backends, "idle_cores", lambda: next(looks))
    prompts = [_chat("Step 1"), _chat("VERDICT"), _chat("x")]
    try:
        _local(tiny_llama, batch_size=1).generate(prompts, max_new_tokens=2)
        assert seen == [1, 2, 2]
        seen.clear()
        torch.set_num_threads(1)  # what load() sets for threads: 1 (this model was passed in, not loaded)
        _local(tiny_llama, batch_size=1, threads=1).generate(prompts, max_new_tokens=2)  # set: never looked at
        assert seen == [1, 1, 1]
        monkeypatch.setattr(r2ta.backends, "THREAD_RECHECK_S", 3600.0)
        recent = _local(tiny_llama, batch_size=1)
        recent._threads_at = time.monotonic()  # looked at on its load a moment ago: not again yet
        recent.generate(prompts, max_new_tokens=2)  # the exhausted looks would raise if it were
    finally:
        torch.set_num_threads(before)


def test_cpu_threads_follow_an_explicit_omp_setting_over_the_idle_cores(monkeypatch):
    import r2ta.backends
    from r2ta.backends import cpu_threads

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("r2ta.cpu.usable_cores", lambda: 2)
    monkeypatch.setattr(r2ta.backends, "idle_cores", lambda: 0.1)  # both cores busy right now
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")  # not a number: the cores idle again
    assert cpu_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    # an idle machine whose load average still counts a job that just ended (it lags by a minute): both cores
    monkeypatch.setattr("os.getloadavg", lambda: (2.0, 1.5, 1.0))
    monkeypatch.setattr(r2ta.backends, "idle_cores", lambda: 1.96)
    assert cpu_threads() == 2
    monkeypatch.setattr(r2ta.backends, "idle_cores", lambda: 1.1)  # one core taken by another process
    assert cpu_threads() == 1
    # no /proc/stat: the load average stands in
    monkeypatch.setattr(r2ta.backends, "idle_cores", lambda: None)
    monkeypatch.setattr("os.getloadavg", lambda: (64.0, 64.0, 64.0))
    assert cpu_threads() == 1
    monkeypatch.setattr("os.getloadavg", lambda: (0.1, 0.1, 0.1))
    assert cpu_threads() == 2


def test_idle_cores_reads_the_idle_share_of_the_cpu_ticks(monkeypatch):
    from r2ta.backends import idle_cores
    from r2ta.cpu import core_scope, stat_ticks

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("r2ta.cpu.usable_cores", lambda: 2)
    samples = iter([(1000, 4000), (1150, 4200)])  # 150 of 200 jiffies idle: 1.5 of 2 cores
    assert idle_cores(0.0, ticks=lambda: next(samples)) == pytest.approx(1.5)
    frozen = iter([(1000, 4000), (1000, 4000)])
    assert idle_cores(0.0, ticks=lambda: next(frozen)) is None

    def unreadable():
        raise OSError("no /proc here")

    assert idle_cores(0.0, ticks=unreadable) is None
    idle, total = stat_ticks()  # this machine's own
    assert 0 <= idle <= total and total > 0
    assert 0.0 <= idle_cores(0.2) <= core_scope().cores + 1e-9


def test_generation_benchmark_runs_end_to_end_on_a_tiny_model(tiny_llama, monkeypatch, capsys):
    """benchmarks/bench_generation.py's plumbing (its figures need the real model: ~5 min): every mode runs
    and prints, and so does the verdict call from kept rows against prompts encoded whole."""
    import benchmarks.bench_generation as bench
    import r2ta.backends
    import r2ta.embedded_model

    monkeypatch.setattr(r2ta.embedded_model, "ensure_embedded_model", lambda: None)
    monkeypatch.setattr(r2ta.backends, "get_backend", lambda name, **kw: _local(tiny_llama, **kw))
    users = ("x", "Step 1", "a much longer prompt about the WORKS_FOR relationship")
    monkeypatch.setattr(bench, "_prompts", lambda n, seed: _with_system(users[i % 3] for i in range(n)))
    bench.main(["--variants", "3", "--batch-size", "2", "--max-new-tokens", "12", "--verdict-tokens", "6"])
    out = capsys.readouterr().out
    for line in ("rows prefill:", "padded prefill:", "one at a time:", "identical outputs 3/3"):
        assert line in out, out
    assert re.search(r"from kept rows: +[\d.]+ s +\((\d+) tokens taken", out), out
    assert re.search(r"identical continuations (\d+)/\1", out) or "none to ask for" in out, out


def test_threads_benchmark_runs_both_settings_on_a_tiny_model(tiny_llama, monkeypatch, capsys):
    """benchmarks/bench_threads.py's plumbing (its figures need the real model): both settings run on the same
    prompts, print their threads a batch, and the ratio; the model keeps its own generate afterwards."""
    import torch

    import benchmarks.bench_generation as generation
    import benchmarks.bench_threads as bench
    import r2ta.backends
    import r2ta.embedded_model

    model, _ = tiny_llama
    before = torch.get_num_threads()
    monkeypatch.setattr(r2ta.embedded_model, "ensure_embedded_model", lambda: None)
    monkeypatch.setattr(r2ta.backends, "get_backend", lambda name, **kw: _local(tiny_llama, **kw))
    monkeypatch.setattr(generation, "_cases", lambda n, seed: [(_chat("Step 1"), None)] * n)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # unset by the benchmark: a fixed count is never looked at
    default = r2ta.backends.THREAD_RECHECK_S
    try:
        bench.main(["--variants", "3", "--batch-size", "2", "--max-new-tokens", "4", "--busy-s", "0"])
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "(OMP_NUM_THREADS=1 unset for this benchmark" in out
    assert re.search(r"one look: +[\d.]+ s \(load [\d.]+ s\)  threads a batch \[\d+, \d+\]", out), out
    assert re.search(r"a look a batch: +[\d.]+ s .*threads a batch \[\d+, \d+\]", out), out
    assert re.search(r"a look a batch: [\d.]+x the time of one look", out), out
    assert r2ta.backends.THREAD_RECHECK_S == default and "generate" not in vars(model)


def test_the_cli_dtype_choices_are_the_backend_settings():
    """reason, eval and loop offer --dtype from one tuple, which must be what BackendConfig accepts."""
    import argparse
    import typing

    from r2ta.commands import DTYPES, eval as eval_cmd, loop as loop_cmd, reason as reason_cmd

    assert typing.get_args(BackendConfig.model_fields["dtype"].annotation) == DTYPES
    for module in (eval_cmd, loop_cmd, reason_cmd):
        sub = argparse.ArgumentParser().add_subparsers()
        module.register(sub)
        parser = next(iter(sub.choices.values()))
        dtype = next(a for a in parser._actions if a.dest == "dtype")
        assert tuple(dtype.choices) == DTYPES
