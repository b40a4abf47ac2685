"""Batched generation on a CPU: each prompt's KV cache is computed alone, then the batch decodes together.

Two costs of a left-padded batch on a CPU (measured with the embedded model, 8 real prompts of
1,174–2,101 tokens, 2 threads; ``python -m benchmarks.bench_generation`` prints the figures):

* **Prefill.** With padding, attention needs a mask, and CPU SDPA then runs its masked kernel
  over the whole padded square: 149 prompt tokens/s for the batch of 8, against 400 for one
  prompt alone, where the causal kernel runs on the prompt's own length. So :func:`prefill_rows`
  encodes each prompt alone (all but its last token), reusing the KV cache of the prefix every
  prompt shares (the system message), and lays the rows out left-padded in one cache. The
  padded slots stay zero and are masked by the attention mask generate passes anyway.
* **Decode.** transformers' ``DynamicCache`` grows by ``torch.cat``: every new token copies the
  whole cache (8 rows × 2,100 tokens × 30 layers: a third of a decode step's time). A
  :class:`GrowingLayer` writes each token into room reserved ahead and hands attention a view.

Greedy outputs are the same tokens as the padded batch (tests/test_backends.py checks it on a tiny
Llama; the benchmark counts identical outputs on the real model). ``generate`` then runs as
usual, from the last prompt token on, so logits processors, stopping criteria and the verdict
grammar see the same ``input_ids`` as before.

* **Continuations.** R2tA asks for the verdict an answer did not reach by generating again from
  the prompt plus the answer so far (:func:`r2ta.backends.ask_for_verdicts`): the same tokens
  the previous call has just encoded and written. :class:`KeptRows` keeps the last rows' caches
  (within a byte budget) and :func:`prefill_rows` starts a row from the longest one it
  continues, so only what is new is encoded.

On a GPU the padded batch stays the default (``prefill: auto``): its attention kernels take
masks without the penalty, and one forward per prompt would serialise the batch (not measured).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class RowPrefillUnsupported(ValueError):
    """The model's cache is not plain full attention (a sliding window, linear attention...): rows cannot be laid out."""


class GrowingLayer(DynamicLayer):
    """One layer's keys and values in preallocated buffers ``[batch, heads, capacity, dim]``.

    ``keys`` / ``values`` are views of the first ``length`` slots; ``update`` writes the new
    tokens in place (doubling the room when it runs out) instead of concatenating a new tensor.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        if keys.shape != values.shape or not 0 <= length <= keys.shape[-2]:
            raise ValueError(f"buffers {tuple(keys.shape)} / {tuple(values.shape)} cannot hold {length} tokens")
        self.dtype, self.device = keys.dtype, keys.device
        self._k, self._v, self._n = keys, values, length
        self.is_initialized = True
        self._refresh()

    def _refresh(self) -> None:
        self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self._n + key_states.shape[-2]
        if end > self._k.shape[-2]:
            room = max(end, 2 * self._k.shape[-2])
            self._k, self._v = (_widen(t, room) for t in (self._k, self._v))
        self._k[:, :, self._n : end] = key_states
        self._v[:, :, self._n : end] = value_states
        self._n = end
        self._refresh()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._n

    # What generate may call on a cache besides update (beam search, assisted decoding): the same
    # operations as DynamicLayer's, applied to the buffers so that the views stay theirs.
    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of tokens to remove, got {tokens_to_remove}")
        self._n = max(0, self._n + tokens_to_remove)
        self._refresh()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._k, self._v = (t.index_select(0, beam_idx.to(t.device)) for t in (self._k, self._v))
        self._refresh()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._k, self._v = (t.repeat_interleave(repeats, dim=0) for t in (self._k, self._v))
        self._refresh()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices, ...], self._v[indices, ...]
        self._refresh()

    def reset(self) -> None:
        self._n = 0
        self._refresh()


def _widen(t: torch.Tensor, room: int) -> torch.Tensor:
    out = t.new_zeros(*t.shape[:2], room, t.shape[3])
    out[:, :, : t.shape[2]] = t
    return out


class RowCache(DynamicCache):
    """A DynamicCache whose layers are :class:`GrowingLayer` (what generate is handed)."""

    def __init__(self, layers: list[GrowingLayer]):
        Cache.__init__(self, layers=layers)


@dataclass
class _Row:
    ids: torch.Tensor  # prompt and answer, unpadded
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, keys and values [heads, len(ids), dim]
    prompt: int  # how many of ids were the prompt
    call: int  # the generate call that wrote it
    size: int  # bytes


def _common(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    m = min(len(a), len(b))
    differ = (a[:m] != b[:m]).nonzero()
    return int(differ[0, 0]) if len(differ) else m


class KeptRows:
    """The KV caches of the last generate call's rows, so that a prompt continuing one encodes only its new tokens.

    A row is its token ids (prompt and answer, unpadded) and, per layer, keys and values
    ``[heads, len(ids), dim]``. What a call does with it (:meth:`LocalBackend.generate
    <r2ta.backends.LocalBackend.generate>`): :meth:`start_call` with its prompts drops every row
    none of them continues (a new batch of variants frees the memory before it allocates its own);
    :func:`prefill_rows` starts each prompt from the row it continues; :meth:`drop_older` once
    every batch of the call is encoded; :meth:`add` the call's own rows. So at most one call's
    rows are held between calls, and never more than ``budget_bytes`` (the oldest go first; a row
    larger than the budget is not kept). ``rows_reused`` / ``tokens_reused`` count what
    :func:`prefill_rows` took from here instead of encoding.

    The reused keys and values of an answer's tokens are the ones computed while it was decoded in
    its batch, not recomputed alone: equal up to float rounding, so a greedy continuation may in
    principle pick another token at a near-tie (``python -m benchmarks.bench_generation`` counts
    identical continuations on the real model).
    """

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._rows: list[_Row] = []
        self._call = 0
        self.bytes = 0
        self.rows_reused = self.tokens_reused = 0

    def __len__(self) -> int:
        return len(self._rows)

    def _keep(self, rows: list[_Row]) -> None:
        self._rows = rows
        self.bytes = sum(r.size for r in rows)

    def start_call(self, prompts: list[list[int]]) -> None:
        """A new call with these prompts (token ids): keep only the rows one of them continues (holds its whole prompt)."""
        self._call += 1
        wanted = [torch.tensor(p) for p in prompts]
        self._keep([r for r in self._rows if any(_common(r.ids, w) >= min(r.prompt, len(w)) for w in wanted)])

    def drop_older(self) -> None:
        """Forget the rows of earlier calls (this call's prompts are encoded)."""
        self._keep([r for r in self._rows if r.call == self._call])

    def add(self, ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]], prompt: int | None = None) -> None:
        """Keep a row of this call: ``ids`` and its cache; ``prompt``: how many of ``ids`` were its prompt (default all)."""
        if any(k.shape[-2] != len(ids) or v.shape != k.shape for k, v in layers):
            raise ValueError(f"{len(ids)} token ids and cache layers of other lengths")
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        if not ids or size > self.budget:
            return
        self._rows.append(_Row(torch.tensor(ids), layers, len(ids) if prompt is None else prompt, self._call, size))
        self.bytes += size
        while self.bytes > self.budget:
            self.bytes -= self._rows.pop(0).size

    def match(self, ids: list[int]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]] | None]:
        """(the most leading tokens of ``ids`` a kept row starts with, that row's layers); (0, None) if none."""
        best: tuple[int, list | None] = (0, None)
        want = torch.tensor(ids)
        for row in self._rows:
            n = _common(row.ids, want)
            if n > best[0]:
                best = (n, row.layers)
        return best

    def clear(self) -> None:
        self._keep([])


def row_layers(cache: Any, row: int, start: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Copies of one row's keys and values, ``length`` positions from ``start``, layer by layer (for :class:`KeptRows`)."""
    return [(layer.keys[row, :, start : start + length].clone(), layer.values[row, :, start : start + length].clone())
            for layer in cache.layers]


def _last_logits_only(model: Any) -> dict:
    """Skip the LM head on all but the last position where the model allows it (the cache is what is wanted)."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def shared_prefix_cache(model: Any, head: list[int]) -> Any:
    """The KV cache of ``head`` (token ids every prompt starts with)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        return model(torch.tensor([head], device=device), use_cache=True, **_last_logits_only(model)).past_key_values


def prefill_rows(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    reserve: int,
    prefix: tuple[int, list[int], Any] | None = None,
    kept: KeptRows | None = None,
) -> RowCache:
    """The KV cache of every row of a left-padded batch but its last token, each row encoded alone.

    ``input_ids`` / ``attention_mask``: ``[batch, width]``, left-padded (what the tokenizer gives
    with ``padding_side="left"``). The cache holds ``width - 1`` positions, each row's tokens
    right-aligned as in the padded batch, plus ``reserve`` free slots for the tokens generate
    will add. ``prefix``: ``(length, ids, cache)`` of a start many rows share, from
    :func:`shared_prefix_cache`; a row that starts with it encodes only the rest. ``kept``: rows
generated lately; a row that continues one further (more tokens in common than ``prefix``)
starts from its cache instead, and encodes nothing at all if it adds no token before its last.
    Positions are each row's own (0 at its first real token), as generate numbers them from the
    attention mask, so the logits match the padded batch's. Raises :class:`RowPrefillUnsupported`
    for a model whose cache layers are not plain full attention.
    """
    if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} must be [batch, width]")
    batch, width = input_ids.shape
    lengths = attention_mask.sum(-1).tolist()
    if any(attention_mask[i, width - n :].sum() != n for i, n in enumerate(lengths)):
        raise ValueError("prefill_rows needs a left-padded batch (padding_side='left')")
    layers: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.inference_mode():
        for i, n in enumerate(lengths):
            ids = input_ids[i, width - n : width - 1]  # the last token is generate's first step
            if ids.numel() == 0:
                continue
            cache, start = None, 0
            if prefix is not None and prefix[0] < ids.numel() and ids[: prefix[0]].tolist() == prefix[1]:
                cache, start = copy.deepcopy(prefix[2]), prefix[0]
            if kept is not None:
                common, layers_kept = kept.match(ids.tolist())
                if common > start and layers_kept is not None:
                    cache, start = DynamicCache([(k[None, :, :common], v[None, :, :common]) for k, v in layers_kept]), common
                    kept.rows_reused += 1
                    kept.tokens_reused += common
            if start < ids.numel():
                cache = model(ids[None, start:], past_key_values=cache, use_cache=True, **_last_logits_only(model)).past_key_values
            odd = {type(layer).__name__ for layer in getattr(cache, "layers", [None]) if type(layer) is not DynamicLayer}
            if odd:
                raise RowPrefillUnsupported(f"cache layers {', '.join(sorted(odd))} are not plain full attention")
            for li, layer in enumerate(cache.layers):
                if li == len(layers):  # the first row that had tokens: allocate this layer's buffers
                    shape = (batch, layer.keys.shape[1], width - 1 + reserve, layer.keys.shape[3])
                    layers.append((layer.keys.new_zeros(shape), layer.values.new_zeros(shape)))
                k, v = layers[li]
                k[i, :, width - n : width - 1] = layer.keys[0]
                v[i, :, width - n : width - 1] = layer.values[0]
    if not layers:
        raise ValueError("every prompt is a single token: nothing to prefill (generate the batch as it is)")
    return RowCache([GrowingLayer(k, v, width - 1) for k, v in layers])
