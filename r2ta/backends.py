"""Model backends: one interface, two implementations, a dict of named configs.

* :class:`LocalBackend` — transformers in this process: the embedded
  SmolLM2-135M-Instruct by default (see :mod:`r2ta.embedded_model`), or any
  local path / Hugging Face id. Batched with left padding, greedy by default,
  CUDA when there is one, else CPU (where each prompt is encoded alone and the
  batch then decodes together: :mod:`r2ta.kv_cache`).
* :class:`OpenAIBackend` — any OpenAI-compatible ``/v1/chat/completions``
  endpoint (vLLM, Ollama, a hosted API) over httpx. The key is read from the
  environment variable the config names, at call time; it is never stored.

A vLLM or Ollama server is a config entry, not a class. Named configs come from
:data:`DEFAULT_CONFIGS`, overridden or extended by a YAML file
(``R2TA_BACKENDS_FILE``, else ``<data dir>/backends.yaml``)::

    vllm:
      kind: openai
      base_url: http://gpu-box:8000/v1
      model: HuggingFaceTB/SmolLM2-1.7B-Instruct
    mine:
      kind: local
      model: /models/my-sft-merged
      batch_size: 16

``R2TA_BACKEND`` names the default (``embedded`` if unset).

This module must not import streamlit or the database layer; torch and
transformers are imported only when a local model is loaded.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from r2ta.config import data_dir
from r2ta.errors import R2taError
from r2ta.prompting import VERDICT_HEADER, own_verdict_prefix, verdict_prefix

logger = logging.getLogger("r2ta.backends")

Messages = list[dict[str, str]]
GRAMMAR_SUFFIX = "+grammar"  # model ids of traces whose verdicts were decoded under the verdict grammar
# a local model run in a dtype other than this machine's default for it (bfloat16 on a CPU): "<id>@bfloat16",
# so that its traces (slightly different tokens) are neither reused for nor mixed with the default's
DTYPE_MARK = "@"


class BackendError(R2taError):
    """A backend is misconfigured, unreachable, or answered with an error."""


class Generation(BaseModel):
    """One completion. ``latency_s`` is the wall time of the call (or batch) that produced it.

    ``finish_reason``: "stop" (end of turn), "length" (hit max_new_tokens),
    "repetition" (a local model was stopped because it was looping), or what a server said.
    """

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    finish_reason: str | None = None  # "stop", "length" (hit max_new_tokens), or what the server said


class BackendConfig(BaseModel):
    """Validated options of a named backend. Unknown keys are refused (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    kind: Literal["local", "openai"]
    model: str = Field(min_length=1)  # local: "embedded", a path or a HF id; openai: the served model name
    model_id: str | None = None  # the id traces are stored under (default: derived from model)
    base_url: str | None = None  # openai: e.g. http://localhost:8000/v1
    api_key_env: str | None = None  # openai: the environment variable holding the key
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = Field(default=8, ge=1, le=512)
    max_concurrency: int = Field(default=4, ge=1, le=64)  # openai: parallel requests
    timeout_s: float = Field(default=300.0, gt=0)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    retries: int = Field(default=2, ge=0, le=10)
    stop_on_repetition: bool = True  # local: end a row that loops (see RepetitionStop)
    repetition_penalty: float = Field(default=1.0, ge=1.0, le=2.0)  # local: transformers' penalty (1.0 = off)
    threads: int | None = Field(default=None, ge=1, le=512)  # local CPU: torch threads (None: see cpu_threads)
    # local: how a batch's prompts are encoded before it decodes. "rows": each prompt alone, the prefix they
    # share once, then one batch decodes (r2ta.kv_cache: 1.5-1.9x faster on a CPU, the same tokens); "batch": one
    # left-padded forward. "auto": rows on a CPU (where the model's cache allows it), batch on a GPU.
    prefill: Literal["auto", "rows", "batch"] = "auto"
    # local, rows prefill: keep the KV caches of the last generated rows up to this many MB, so that a prompt
    # continuing one of them (R2tA asking for a verdict the answer did not reach) encodes only its new tokens
    # (r2ta.kv_cache.KeptRows); 0 = encode every prompt whole.
    keep_cache_mb: int = Field(default=2048, ge=0, le=1_000_000)
    # openai: the server continues a final assistant message (vLLM's continue_final_message), so a
    # verdict the model did not reach can be asked for (r2ta.prompting.verdict_prefix). Local models always can.
    assistant_prefill: bool = False
    # every verdict — asked for (ask_for_verdicts) or started by the model — is decoded under
    # r2ta.grammar's verdict grammar (known categories, the diagram's elements). Traces: "<id>+grammar".
    # local: a logits processor in this process; openai: the grammar as a regex the server decodes under
    # (vLLM structured outputs; needs assistant_prefill to continue an answer from its VERDICT: line).
    verdict_grammar: bool = False
    # openai + verdict_grammar: the request field carrying the regex. vLLM >= 0.12 reads
    # {"structured_outputs": {"regex": ...}}; older vLLM reads "guided_regex".
    grammar_field: Literal["structured_outputs", "guided_regex"] = "structured_outputs"

    @model_validator(mode="after")
    def _check(self) -> "BackendConfig":
        if self.verdict_grammar and self.kind == "openai" and not self.assistant_prefill:
            raise ValueError("verdict_grammar on an openai backend needs assistant_prefill: true (the verdict is decoded "
                             "by continuing the answer from its VERDICT: line, vLLM's continue_final_message)")
        if self.kind == "openai":
            if not self.base_url:
                raise ValueError("an openai backend needs base_url (e.g. http://localhost:8000/v1)")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        return self


DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {
    "embedded": {"kind": "local", "model": "embedded"},
    "vllm": {
        "kind": "openai",
        "base_url": "http://localhost:8000/v1",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "api_key_env": "VLLM_API_KEY",
        "max_concurrency": 16,
        "assistant_prefill": True,
    },
    "ollama": {"kind": "openai", "base_url": "http://localhost:11434/v1", "model": "smollm2:135m"},
    "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"},
}


def backends_file() -> Path:
    return Path(os.environ.get("R2TA_BACKENDS_FILE") or data_dir() / "backends.yaml")


def load_configs(path: str | Path | None = None) -> dict[str, BackendConfig]:
    """The built-in configs, with the YAML file's entries merged over them (key by key)."""
    raw: dict[str, dict[str, Any]] = {k: dict(v) for k, v in DEFAULT_CONFIGS.items()}
    path = Path(path) if path else backends_file()
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise BackendError(f"{path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise BackendError(f"{path} must map backend names to settings")
        for name, entry in data.items():
            if not isinstance(entry, dict):
                raise BackendError(f"{path}: entry {name!r} must be a mapping of settings")
            raw[str(name)] = {**raw.get(str(name), {}), **entry}
    configs = {}
    for name, entry in raw.items():
        try:
            configs[name] = BackendConfig(name=name, **{k: v for k, v in entry.items() if k != "name"})
        except (ValidationError, TypeError) as err:
            msg = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
            loc = ".".join(map(str, err.errors()[0]["loc"])) if isinstance(err, ValidationError) else ""
            raise BackendError(f"backend {name!r} ({path}): {loc + ': ' if loc else ''}{msg}") from None
    return configs


def default_backend_name() -> str:
    return os.environ.get("R2TA_BACKEND") or "embedded"


def get_backend(name: str | None = None, **overrides: Any) -> "Backend":
    """The backend named ``name`` (default ``R2TA_BACKEND`` or ``embedded``), options overridden."""
    name = name or default_backend_name()
    configs = load_configs()
    if name not in configs:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(sorted(configs))} (add one in {backends_file()})")
    config = configs[name]
    if overrides:
        try:
            config = BackendConfig(**{**config.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})
        except ValidationError as err:
            raise BackendError(f"backend {name!r}: {err.errors()[0]['msg']}") from None
    return make_backend(config)


def make_backend(config: BackendConfig) -> "Backend":
    return LocalBackend(config) if config.kind == "local" else OpenAIBackend(config)


class Backend(ABC):
    """Chat in, text out. ``id`` is the model id traces are stored under; ``version`` refines it."""

    dtype_suffix = ""  # a local model in another dtype than its default (LocalBackend.dtype_suffix)
    load_s = 0.0  # seconds spent loading the model so far (a local model, on its first generation; 0 for a server)

    def __init__(self, config: BackendConfig):
        self.config = config

    @property
    @abstractmethod
    def id(self) -> str: ...

    @property
    def version(self) -> str:
        return ""

    @property
    def device(self) -> str:
        return "remote"

    @property
    def can_continue(self) -> bool:
        """Whether ``generate(..., prefixes=...)`` works: the answer starts with given text and goes on."""
        return False

    @abstractmethod
    def generate(
        self, prompts: list[Messages], max_new_tokens: "int | list[int]" = 512, temperature: float | None = None
    ) -> list[Generation]:
        """One :class:`Generation` per prompt, in order.

        ``max_new_tokens``: one budget for every prompt, or one per prompt (:func:`budgets`; the
        local and OpenAI backends take both).

        Backends whose :attr:`can_continue` is true also take ``prefixes=``: one text per
        prompt that the answer starts with; the Generation holds only what follows it.
        """

    def close(self) -> None:
        """Release what the backend holds (a model, a connection pool)."""


def ask_for_verdicts(
    backend: Backend, prompts: list, generations: list[Generation], verdict_tokens: int,
    element_ids: list | None = None,
) -> dict[int, tuple[int | None, int]]:
    """Give every answer without a verdict ``VERDICT:`` and ``verdict_tokens`` more to write it, in place.

    Returns position -> (characters the model wrote before ``VERDICT:`` was appended,
    tokens it wrote after). A backend that cannot continue an answer, or ``verdict_tokens``
    0, leaves them as they are.

    On a backend with ``verdict_grammar`` every verdict is decoded under :mod:`r2ta.grammar`'s
    grammar over the diagram's element ids (``element_ids``, one collection per prompt): the ones
    asked for, and the ones the model started itself — those are cut at the model's own
    ``VERDICT:`` line (:func:`r2ta.prompting.own_verdict_prefix`) and decoded again from there,
    with the same budget (greedy, the steps before it are the model's either way; only the verdict is
    decoded anew). They are returned as position -> (None, tokens decoded): the model did reach its
    verdict by itself.
    """
    if verdict_tokens <= 0 or not backend.can_continue:
        return {}
    grammar = bool(getattr(backend.config, "verdict_grammar", False))
    todo = []  # (position, prefix, asked for)
    for k, g in enumerate(generations):
        prefix = verdict_prefix(g.text, cut=g.finish_reason in ("length", "repetition"))
        if prefix is not None:
            todo.append((k, prefix, True))
        elif grammar:
            todo.append((k, own_verdict_prefix(g.text), False))
    if not todo:
        return {}
    extra = {}
    if grammar:
        if element_ids is None:
            raise BackendError(f"backend {backend.config.name!r} decodes verdicts under a grammar and needs each diagram's elements")
        extra["grammars"] = [list(element_ids[k]) for k, _, _ in todo]
    more = backend.generate([prompts[k] for k, _, _ in todo], max_new_tokens=verdict_tokens,
                            prefixes=[p for _, p, _ in todo], **extra)
    tokenizer = getattr(backend, "tokenizer", None) if grammar else None
    out: dict[int, tuple[int | None, int]] = {}
    for (k, prefix, asked), tail in zip(todo, more):
        g = generations[k]
        before = g.completion_tokens or 0
        if not asked:  # the model's own verdict is replaced: count the tokens of what stays
            own = prefix[: -len(VERDICT_HEADER)]
            before = len(tokenizer(own, add_special_tokens=False)["input_ids"]) if tokenizer is not None else before
        generations[k] = Generation(
            text=prefix + tail.text,
            prompt_tokens=g.prompt_tokens,
            completion_tokens=before + (tail.completion_tokens or 0),
            latency_s=g.latency_s + tail.latency_s,
            finish_reason=tail.finish_reason,
        )
        out[k] = (len(prefix) - len(VERDICT_HEADER) if asked else None, tail.completion_tokens or 0)
    return out


def budgets(max_new_tokens: "int | list[int]", n: int) -> list[int]:
    """``max_new_tokens`` of a :meth:`Backend.generate` call as one budget per prompt (``n`` of them)."""
    if isinstance(max_new_tokens, int):
        return [max_new_tokens] * n
    out = [int(b) for b in max_new_tokens]
    if len(out) != n:
        raise ValueError(f"{len(out)} token budgets for {n} prompts")
    return out


class RowBudgetStop:
    """A transformers stopping criterion: row ``k`` stops once it has written ``budgets[k]`` tokens.

    A batch generates up to its largest budget (``max_new_tokens``); this ends every other row
    at its own, and transformers pads it from there like a row that wrote its end of turn.
    """

    def __init__(self, prompt_width: int, budgets: list[int]):
        self.width, self.budgets = prompt_width, budgets

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        new = input_ids.shape[1] - self.width
        return torch.tensor([new >= b for b in self.budgets], dtype=torch.bool, device=input_ids.device)


# -- local transformers -------------------------------------------------------------

_LOOP = re.compile(r"(.{3,60}?)\1{3,}", re.DOTALL)
_DIGITS = re.compile(r"\d+")


def is_looping(text: str) -> bool:
    """Whether generated text has fallen into a loop a greedy small model never leaves.

    Two signs: the last four complete lines are the same once numbers are ignored
    ("1. Each customer ...", "2. Each customer ..."), or the text ends with a
    short piece repeated four times or more ("a company, a company, ..."), possibly
    cut in the middle of the piece.
    A trace never does either: its steps differ by element and finding.
    """
    lines = text.split("\n")[:-1]  # complete lines only
    last = [_DIGITS.sub("#", line).strip() for line in lines[-4:]]
    if len(last) == 4 and last[0] and all(line == last[0] for line in last):
        return True
    tail = text[-300:]
    for m in _LOOP.finditer(tail):  # a piece repeated 4+ times, running up to the end (maybe mid-piece)
        unit = m.group(1)
        if any(c.isalnum() for c in unit) and m.end() >= len(tail) - len(unit):
            return True
    return False


class RepetitionStop:
    """A transformers stopping criterion: per row, stop once its new text :func:`is_looping`.

    Checked every 8 tokens on the last 256 generated tokens. Greedy decoding of a
    135M model loops often; without this a looping row burns the whole token
    budget and holds up its batch. The output keeps what was written up to the stop.
    """

    def __init__(self, tokenizer, prompt_width: int, every: int = 8):
        self.tokenizer, self.width, self.every = tokenizer, prompt_width, every
        self.stopped: set[int] = set()

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        new = input_ids.shape[1] - self.width
        if new == 0 or new % self.every:
            for row in self.stopped:
                done[row] = True
            return done
        for row in range(input_ids.shape[0]):
            if row in self.stopped:
                done[row] = True
                continue
            tail = input_ids[row, max(self.width, input_ids.shape[1] - 256) :].tolist()
            if is_looping(self.tokenizer.decode(tail, skip_special_tokens=True)):
                self.stopped.add(row)
                done[row] = True
        return done


def cpu_threads() -> int:
    """Torch threads for CPU inference: the cores that are free right now, at least one.

    On a shared machine this matters more than anything else: with two OpenMP
    threads on two busy cores, a decode step of the 135M model took 2.4 s; with
    one thread, 0.12 s (measured here at load average 9). "Right now" is the cores
    /proc/stat counts idle over half a second (:func:`idle_cores`), not the load
    average, which lags by a minute: the evaluation a training run starts as it
    ends saw the run's two cores still busy and generated on one thread of an idle
    machine: 8 test variants' real prompts (~1,600 tokens), one batch, bf16, took 47-53 s on one thread
    and 31-32 s on two (the 2-core EPYC; docs/measured/watching-model-job-2026-12-06.txt). The load
    average stands in where /proc/stat cannot be read. A local model looks again before a batch, at most once
    in :data:`THREAD_RECHECK_S` (half a second of its time in twenty, about one batch of 8 answers on a CPU). The
    cores are the ones this process may use (:func:`r2ta.cpu.usable_cores`): in a container limited by a cpuset
    or a CPU quota, those, not the host's, and their idle ones counted within that limit. Set ``threads`` in the
    backend config, or ``OMP_NUM_THREADS`` (``r2ta loop --threads``), to override.
    """
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    from r2ta import cpu

    cores = cpu.usable_cores()
    idle = idle_cores()
    if idle is not None:
        return max(1, min(cores, int(idle + 0.5)))
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, min(cores, cores - busy))


THREAD_RECHECK_S = 20.0  # a local model on a CPU looks at the idle cores again before a batch this long after


def idle_cores(window_s: float = 0.5, ticks=None, cores: int | None = None) -> float | None:
    """The cores idle over the next ``window_s`` seconds, or None where they cannot be read (not Linux) or the
    ticks did not move. ``ticks`` and ``cores`` default to this process's :func:`r2ta.cpu.core_scope`: the
    machine's, its cpuset's, or its cgroup's CPU quota's (a container's ``--cpus``)."""
    if ticks is None:
        from r2ta.cpu import core_scope

        scope = core_scope()
        ticks, cores = scope.ticks, cores or scope.cores
    try:
        idle0, total0 = ticks()
        time.sleep(window_s)
        idle1, total1 = ticks()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return max(0.0, (idle1 - idle0) / (total1 - total0) * (cores or os.cpu_count() or 1))


class LocalBackend(Backend):
    """A causal LM through transformers, loaded on first use (or passed in, for tests)."""

    def __init__(self, config: BackendConfig, model: Any = None, tokenizer: Any = None):
        super().__init__(config)
        self._model = model
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self._rows_unsupported = False  # set when the model's cache cannot be prefilled row by row
        self._kept = None  # r2ta.kv_cache.KeptRows, made on first use when keep_cache_mb > 0
        self._threads_at = 0.0  # time.monotonic() of the last look at the idle cores (_follow_idle_cores)

    @property
    def id(self) -> str:
        """The model id traces are stored under; ``@<dtype>`` when the weights are not in this machine's default
        dtype for the model (see :attr:`dtype_suffix`), ``+grammar`` when verdicts are grammar-constrained."""
        return self._model_id() + self.dtype_suffix + (GRAMMAR_SUFFIX if self.config.verdict_grammar else "")

    @property
    def dtype_suffix(self) -> str:
        """``@bfloat16`` (etc.) when ``dtype`` asks for other weights than ``auto`` would load on this machine
        (float32 on a CPU; bf16, else fp16, on a GPU); "" otherwise."""
        if self.config.dtype == "auto":
            return ""
        device = self._resolve_device()
        chosen, default = self._resolve_dtype(device), self._resolve_dtype(device, "auto")
        return "" if chosen == default else f"{DTYPE_MARK}{self.config.dtype}"

    def _model_id(self) -> str:
        if self.config.model_id:
            return self.config.model_id
        if self.config.model == "embedded":
            from r2ta.embedded_model import EMBEDDED_MODEL_ID

            return EMBEDDED_MODEL_ID
        return Path(self.config.model).name if Path(self.config.model).exists() else self.config.model

    @property
    def version(self) -> str:
        if self.config.model == "embedded":
            from r2ta.embedded_model import EMBEDDED_VERSION

            return EMBEDDED_VERSION
        return ""

    def _resolve_device(self) -> str:
        import torch

        if self.config.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.config.device == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"backend {self.config.name!r} asks for device cuda, but torch sees no GPU; use device: auto")
        return self.config.device

    def _resolve_dtype(self, device: str, dtype: str | None = None):
        import torch

        dtype = dtype or self.config.dtype
        if dtype != "auto":
            return getattr(torch, dtype)
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            started = time.perf_counter()
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            source = self.config.model
            if source == "embedded":
                from r2ta.embedded_model import ensure_embedded_model

                source = str(ensure_embedded_model())
            device = self._resolve_device()
            if device == "cpu":
                torch.set_num_threads(self.config.threads or cpu_threads())
                self._threads_at = time.monotonic()
            try:
                tokenizer = AutoTokenizer.from_pretrained(source)
                model = AutoModelForCausalLM.from_pretrained(source, dtype=self._resolve_dtype(device))
            except OSError as err:
                raise BackendError(
                    f"cannot load model {source!r}: {err}. Use a local folder with config.json and weights, "
                    "or a Hugging Face id where a hub is reachable"
                ) from None
            model.to(device).eval()
            self._model, self._tokenizer = model, tokenizer
            self.load_s += time.perf_counter() - started

    @property
    def device(self) -> str:
        if self._model is None:
            return self._resolve_device()
        return str(next(self._model.parameters()).device)

    def _follow_idle_cores(self, device) -> None:
        """Before a batch on a CPU, at most once in :data:`THREAD_RECHECK_S`: take as many threads as cores are idle
        now (:func:`cpu_threads`), unless the config sets ``threads``. The load's one look lasts a whole evaluation
        (150 answers, twenty minutes and more on a CPU): a half-second window that caught another job ending, or a
        page redrawing, kept it on one thread of an idle machine — 1.6x the time (the docstring of
        :func:`cpu_threads`) — and a job started beside one that has since ended never took the freed core."""
        if device.type != "cpu" or self.config.threads or time.monotonic() - self._threads_at < THREAD_RECHECK_S:
            return
        import torch

        threads = cpu_threads()
        self._threads_at = time.monotonic()
        if threads != torch.get_num_threads():
            logger.info("%s: generating on %d threads, not %d: the cores idle now", self.id, threads,
                        torch.get_num_threads())
            torch.set_num_threads(threads)

    @property
    def model(self):
        self.load()
        return self._model

    @property
    def tokenizer(self):
        self.load()
        return self._tokenizer

    def render_prompt(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @property
    def can_continue(self) -> bool:
        return True

    def generate(
        self,
        prompts: list[Messages],
        max_new_tokens: "int | list[int]" = 512,
        temperature: float | None = None,
        *,
        prefixes: list[str] | None = None,
        grammars: list | None = None,
    ) -> list[Generation]:
        """``grammars``: one collection of element ids per prompt (or None): that row's answer is
        decoded under :class:`r2ta.grammar.VerdictGrammar` (it must start where a verdict starts,
        i.e. its prefix ends with ``VERDICT:``). ``max_new_tokens``: one budget, or one per prompt
        (a batch runs to its largest; :class:`RowBudgetStop` ends each row at its own)."""
        import torch

        if not prompts:
            return []
        limits = budgets(max_new_tokens, len(prompts))
        if prefixes is not None and len(prefixes) != len(prompts):
            raise ValueError(f"{len(prefixes)} prefixes for {len(prompts)} prompts")
        if grammars is not None and len(grammars) != len(prompts):
            raise ValueError(f"{len(grammars)} grammars for {len(prompts)} prompts")
        tok, model = self.tokenizer, self.model
        tok.padding_side = "left"  # decoder-only: pad on the left so every row continues its own text
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        temperature = self.config.temperature if temperature is None else temperature
        texts = [self.render_prompt(p) + (prefixes[i] if prefixes else "") for i, p in enumerate(prompts)]
        token_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        lengths = [len(x) for x in token_ids]
        # Batch prompts of similar length together: less padding, same results.
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        eos_ids = set(_as_list(model.generation_config.eos_token_id) or _as_list(tok.eos_token_id))
        out: list[Generation | None] = [None] * len(texts)
        device = next(model.parameters()).device
        alone = self.config.prefill == "rows" or (
            self.config.prefill == "auto" and device.type == "cpu" and not self._rows_unsupported
        )
        kept = self._kept_rows() if alone else None
        if kept is not None:
            kept.start_call([x[:-1] for x in token_ids])  # rows no prompt here continues go before this call allocates
        prefix = self._shared_prefix(texts, kept) if (alone or self.config.batch_size == 1) and len(texts) > 1 else None
        for start in range(0, len(order), self.config.batch_size):
            self._follow_idle_cores(device)
            idx = order[start : start + self.config.batch_size]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            own = [limits[i] for i in idx]
            top = max(own)
            kwargs: dict[str, Any] = {"max_new_tokens": top, "pad_token_id": tok.pad_token_id}
            stopper, criteria = None, []
            if self.config.stop_on_repetition:
                stopper = RepetitionStop(tok, enc["input_ids"].shape[1])
                criteria.append(stopper)
            if min(own) < top:
                criteria.append(RowBudgetStop(enc["input_ids"].shape[1], own))
            if criteria:
                from transformers import StoppingCriteriaList

                kwargs["stopping_criteria"] = StoppingCriteriaList(criteria)
            kwargs.update({"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False})
            if self.config.repetition_penalty != 1.0:
                kwargs["repetition_penalty"] = self.config.repetition_penalty
            if grammars is not None:
                from transformers import LogitsProcessorList

                from r2ta.grammar import VerdictConstraint, VerdictGrammar

                rows = [None if grammars[i] is None else VerdictGrammar(tok, grammars[i], eos_ids=eos_ids or None) for i in idx]
                kwargs["logits_processor"] = LogitsProcessorList([VerdictConstraint(rows, enc["input_ids"].shape[1], top)])
            t0 = time.perf_counter()
            with torch.inference_mode():
                if alone and enc["input_ids"].shape[1] > 1:
                    from r2ta.kv_cache import RowPrefillUnsupported, prefill_rows, row_layers

                    try:
                        kwargs["past_key_values"] = prefill_rows(
                            model, enc["input_ids"], enc["attention_mask"], reserve=top, prefix=prefix, kept=kept
                        )
                    except RowPrefillUnsupported as err:
                        if self.config.prefill == "rows":
                            raise BackendError(f"prefill: rows cannot encode this model's prompts alone ({err}); "
                                               "use prefill: batch (or auto)") from None
                        self._rows_unsupported, alone = True, False  # auto: this model keeps the padded batch
                    if kept is not None and start + self.config.batch_size >= len(order):
                        kept.drop_older()  # every prompt of the call is encoded
                if not alone and len(idx) == 1 and prefix is not None and enc["input_ids"][0, : prefix[0]].tolist() == prefix[1]:
                    kwargs["past_key_values"] = copy.deepcopy(prefix[2])
                seqs = model.generate(**enc, **kwargs)
            latency = time.perf_counter() - t0
            width = enc["input_ids"].shape[1]
            row_cache = kwargs.get("past_key_values") if alone else None
            # generate wrote into the cache it was handed: every position but the last token's
            if row_cache is not None and kept is not None and row_cache.get_seq_length() != seqs.shape[1] - 1:
                row_cache = None
            for row, i in enumerate(idx):
                new = seqs[row, width : width + limits[i]].tolist()  # a row ended at its own budget is padded after it
                stop = next((k for k, t in enumerate(new) if t in eos_ids or t == tok.pad_token_id), None)
                written = new if stop is None else new[:stop]
                if row_cache is not None and kept is not None:
                    n = int(enc["attention_mask"][row].sum())
                    ids = enc["input_ids"][row, width - n :].tolist() + written[: len(new) - 1]
                    kept.add(ids, row_layers(row_cache, row, width - n, len(ids)), prompt=n)
                looped = stopper is not None and row in stopper.stopped
                text = tok.decode(written, skip_special_tokens=True)
                if grammars is not None and grammars[i] is not None:
                    from r2ta.grammar import trim_incomplete

                    text = trim_incomplete(text)
                out[i] = Generation(
                    text=text,
                    prompt_tokens=int(enc["attention_mask"][row].sum()),
                    completion_tokens=len(written) + (0 if stop is None or looped else 1),
                    latency_s=latency,
                    finish_reason="repetition" if looped else "stop" if stop is not None else "length",
                )
        return out  # type: ignore[return-value]

    def _kept_rows(self):
        """The :class:`r2ta.kv_cache.KeptRows` of this backend (None when ``keep_cache_mb`` is 0)."""
        if self._kept is None and self.config.keep_cache_mb > 0:
            from r2ta.kv_cache import KeptRows

            self._kept = KeptRows(self.config.keep_cache_mb * 2**20)
        return self._kept

    def _shared_prefix(self, texts: list[str], kept=None):
        """(length, token ids, KV cache) of the tokens every prompt starts with, or None.

        Every R2tA prompt starts with the same system message (~400 tokens, ~750
        with the worked example): when prompts are encoded one at a time (``prefill: rows``, or
        a batch of one), that prefix is encoded once and its cache copied into each, instead of
        recomputed every time. (A left-padded batch encoded in one forward cannot line it up.)
        None as well when every prompt continues a row in ``kept`` at least that far (nothing to encode it for).
        """
        from r2ta.kv_cache import shared_prefix_cache

        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        n = 0
        shortest = min(len(x) for x in ids)
        while n < shortest - 1 and all(x[n] == ids[0][n] for x in ids):
            n += 1
        if n < 32:
            return None
        if kept is not None and len(kept) and all(kept.match(x[:-1])[0] > n for x in ids):
            return None
        head = ids[0][:n]
        return n, head, shared_prefix_cache(self.model, head)

    def close(self) -> None:
        self._model = self._tokenizer = None
        if self._kept is not None:
            self._kept.clear()


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# -- OpenAI-compatible HTTP ----------------------------------------------------------


class OpenAIBackend(Backend):
    """``POST {base_url}/chat/completions``, one request per prompt, a few in parallel."""

    def __init__(self, config: BackendConfig, transport: httpx.BaseTransport | None = None):
        super().__init__(config)
        self._client = httpx.Client(timeout=config.timeout_s, transport=transport)

    @property
    def id(self) -> str:
        """The model id traces are stored under; ``+grammar`` when verdicts are grammar-constrained."""
        return (self.config.model_id or self.config.model) + (GRAMMAR_SUFFIX if self.config.verdict_grammar else "")

    @property
    def version(self) -> str:
        return self.config.base_url or ""

    def _headers(self) -> dict[str, str]:
        env = self.config.api_key_env
        if not env:
            return {}
        key = os.environ.get(env)
        if not key:
            if self.config.base_url and self.config.base_url.startswith(("http://localhost", "http://127.0.0.1")):
                return {}  # a server on this machine (vLLM, Ollama) usually runs without a key
            raise BackendError(f"backend {self.config.name!r} reads its API key from ${env}, which is not set; export {env}=...")
        return {"Authorization": f"Bearer {key}"}

    @property
    def can_continue(self) -> bool:
        return self.config.assistant_prefill

    def _one(self, messages: Messages, max_new_tokens: int, temperature: float, prefix: str | None = None,
             grammar: list | None = None) -> Generation:
        url = self.config.base_url.rstrip("/") + "/chat/completions"  # type: ignore[union-attr]
        body: dict[str, Any] = {"model": self.config.model, "messages": messages, "max_tokens": max_new_tokens, "temperature": temperature}
        if prefix is not None:
            if not self.config.assistant_prefill:
                raise BackendError(f"backend {self.config.name!r} cannot continue an answer; set assistant_prefill: true "
                                   "for a server that supports continue_final_message (vLLM)")
            # vLLM: render the chat with the assistant's text so far and go on from it.
            body["messages"] = [*messages, {"role": "assistant", "content": prefix}]
            body.update({"continue_final_message": True, "add_generation_prompt": False})
        if grammar is not None:
            from r2ta.grammar import verdict_regex

            regex = verdict_regex(grammar)
            body.update({"guided_regex": regex} if self.config.grammar_field == "guided_regex"
                        else {"structured_outputs": {"regex": regex}})
        headers = self._headers()
        for attempt in range(self.config.retries + 1):
            t0 = time.perf_counter()
            try:
                resp = self._client.post(url, json=body, headers=headers)
            except httpx.TransportError as err:
                if attempt < self.config.retries:
                    time.sleep(0.5 * 2**attempt)
                    continue
                raise BackendError(f"cannot reach {url} ({type(err).__name__}: {err}); is the server running?") from None
            latency = time.perf_counter() - t0
            if resp.status_code in (429, 500, 502, 503, 504) and attempt < self.config.retries:
                time.sleep(0.5 * 2**attempt)
                continue
            if resp.status_code != 200:
                raise BackendError(f"{url} answered HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                data = resp.json()
                choice = data["choices"][0]
                text = choice["message"].get("content") or ""
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                raise BackendError(f"{url} did not answer in the chat-completions format: {resp.text[:300]}") from None
            usage = data.get("usage") or {}
            if grammar is not None:
                from r2ta.grammar import trim_incomplete

                text = trim_incomplete(text)  # cut by max_tokens inside a line: that line goes
            return Generation(
                text=text,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                latency_s=latency,
                finish_reason=choice.get("finish_reason"),
            )
        raise AssertionError("unreachable")

    def generate(
        self,
        prompts: list[Messages],
        max_new_tokens: "int | list[int]" = 512,
        temperature: float | None = None,
        *,
        prefixes: list[str] | None = None,
        grammars: list | None = None,
    ) -> list[Generation]:
        """``grammars``: as :meth:`LocalBackend.generate`'s — that row is decoded under the verdict
        grammar, sent to the server as a regex (:func:`r2ta.grammar.verdict_regex`). ``max_new_tokens``:
        one budget, or one per prompt (each request's ``max_tokens``)."""
        temperature = self.config.temperature if temperature is None else temperature
        if prefixes is not None and len(prefixes) != len(prompts):
            raise ValueError(f"{len(prefixes)} prefixes for {len(prompts)} prompts")
        if grammars is not None and len(grammars) != len(prompts):
            raise ValueError(f"{len(grammars)} grammars for {len(prompts)} prompts")
        jobs = list(zip(prompts, budgets(max_new_tokens, len(prompts)), prefixes or [None] * len(prompts),
                        grammars or [None] * len(prompts)))
        if len(jobs) <= 1 or self.config.max_concurrency == 1:
            return [self._one(p, b, temperature, x, g) for p, b, x, g in jobs]
        with ThreadPoolExecutor(max_workers=min(self.config.max_concurrency, len(jobs))) as pool:
            return list(pool.map(lambda job: self._one(job[0], job[1], temperature, job[2], job[3]), jobs))

    def close(self) -> None:
        self._client.close()
