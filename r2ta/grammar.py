"""Grammar-constrained verdicts: a verdict the parser can read, naming only what the diagram holds.

When a model's answer has no ``VERDICT:`` line, R2tA appends one and lets the model write
the verdict (:func:`r2ta.backends.ask_for_verdicts`). Measured on the embedded model
(docs/measured/loop-run32s-spread-2026-12-03.txt), those continuations were almost never
valid: 0 of 21 for the spread SFT model, 0 of 50 for the base model — it goes on writing
steps, prose or element names that do not exist. With ``verdict_grammar`` the local
backend decodes the continuation under this grammar instead::

    verdict := "NONE" | line ( "\\n" line )*        (after the appended "VERDICT:\\n")
    line    := "MISTAKE: " CATEGORY " |" ( " " ELEMENT "," )* " " ELEMENT " |" TEXT
    TEXT    := any tokens without a line break (at most ``max_text_tokens``)

CATEGORY is one of the 11 category ids, ELEMENT one of the diagram's element ids. The
model still chooses everything — which category, which elements, when to stop — but only
among continuations the parser reads, so a verdict is valid by construction and grounded
by construction. A verdict the model starts itself (its own ``VERDICT:`` line) is decoded
under the grammar too: the answer is cut at that line and the verdict decoded again from
there (:func:`r2ta.prompting.own_verdict_prefix`). Whether the model *reaches* a verdict
by itself (the unforced validity) is still the model's; so are F1 and hallucination, which
the grammar cannot fake: a wrong category is still wrong.

Choices are token tries: every allowed string (``MISTAKE: missing_key |``,
`` BOOK,`` / `` BOOK |``) is tokenized once, and at each step only the next tokens of the
strings still consistent with what was written are allowed (the "prefix-allowed tokens"
constrained decoding of De Cao et al. 2021, GENRE). No allowed string is a prefix of
another (each ends with its own separator), so a finished choice is never ambiguous.
A server decodes under the same grammar written as one regex (:func:`verdict_regex`,
vLLM's structured outputs), which the OpenAI-compatible backend sends along.

This module must not import streamlit or the database layer; torch is imported only by
:meth:`VerdictConstraint.__call__`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from r2ta.eerd import CATEGORIES

MAX_LINES = 8  # mistake lines per verdict; a variant has 1-3 mistakes, the parser keeps up to 50
MAX_ELEMENTS = 6  # elements per mistake line
MAX_TEXT_TOKENS = 48  # explanation tokens before a line break is forced
MAX_TEXT_CHARS = 200  # the same for a server's regex-guided decoding (characters, ~48 tokens)


def grammar_elements(element_ids) -> list[str]:
    """The element ids a verdict may name: those the line format can carry (no ``,``, ``|`` or line break)."""
    return sorted({e for e in element_ids if e and e.strip() == e and not any(c in e for c in ",|\n\r")})


class _Trie:
    """Allowed strings as token sequences; ``next_tokens(prefix)`` / ``complete(prefix)``."""

    def __init__(self, sequences: dict[tuple[int, ...], Any]):
        self.done = sequences  # token sequence -> what it means
        self.children: dict[tuple[int, ...], set[int]] = {}
        for seq in sequences:
            for k in range(len(seq)):
                self.children.setdefault(seq[:k], set()).add(seq[k])

    def next_tokens(self, prefix: tuple[int, ...]) -> set[int]:
        return self.children.get(prefix, set())


@dataclass
class _Row:
    """Where one row is in the grammar."""

    state: str = "start"  # start | line | element | text | end
    pending: tuple[int, ...] = ()  # tokens written in the current choice
    lines: int = 0
    elements: int = 0
    text_tokens: int = 0
    consumed: int = 0  # generated tokens already read
    history: list[str] = field(default_factory=list)


class VerdictGrammar:
    """The verdict grammar of one diagram for one tokenizer (see the module docstring)."""

    def __init__(self, tokenizer, element_ids, *, eos_ids=None, max_lines: int = MAX_LINES,
                 max_elements: int = MAX_ELEMENTS, max_text_tokens: int = MAX_TEXT_TOKENS):
        """``eos_ids``: the ids that end generation (the model's generation config; default the tokenizer's)."""
        self.tok = tokenizer
        self.max_lines, self.max_elements, self.max_text_tokens = max_lines, max_elements, max_text_tokens
        elements = grammar_elements(element_ids)
        if not elements:
            raise ValueError("a verdict grammar needs at least one element to name")
        enc = lambda s: tuple(tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
        self.first = _Trie({enc("NONE"): "none", **{enc(f"MISTAKE: {c} |"): "line" for c in CATEGORIES}})
        self.line = _Trie({enc(f"MISTAKE: {c} |"): "line" for c in CATEGORIES})
        self.element = _Trie({**{enc(f" {e},"): "more" for e in elements}, **{enc(f" {e} |"): "last" for e in elements}})
        self.last_element = _Trie({enc(f" {e} |"): "last" for e in elements})
        # tokens a line needs before its explanation (category, one element): below this budget, end instead
        self.reserve = max(map(len, self.line.done)) + max(map(len, self.last_element.done)) + 1
        self.element_reserve = max(map(len, self.element.done)) + max(map(len, self.last_element.done)) + 1
        newline = enc("\n")
        if len(newline) != 1:
            raise ValueError("the tokenizer has no single token for a line break")
        self.newline = newline[0]
        eos = tokenizer.eos_token_id if eos_ids is None else eos_ids
        self.eos = set(eos if isinstance(eos, (list, tuple, set)) else [eos]) - {None}
        if not self.eos:
            raise ValueError("a verdict grammar needs an end-of-text token id to end a verdict with")

    def line_break_tokens(self) -> tuple[int, ...]:
        """Every vocabulary token whose text contains a line break, except the plain newline token."""
        # cached on the tokenizer itself (decoding 49k tokens takes a while; an id() key could be reused)
        cache = getattr(self.tok, "_r2ta_line_breaks", None)
        if cache is None or cache[0] != (len(self.tok), self.newline):
            cache = ((len(self.tok), self.newline), _line_break_tokens(self.tok, self.newline))
            self.tok._r2ta_line_breaks = cache
        return cache[1]

    # -- the state machine ---------------------------------------------------------

    def allowed(self, row: _Row, remaining: int | None = None) -> set[int] | None:
        """The tokens allowed next (None: any token but a line break inside text).

        ``remaining``: tokens left in the budget. A new line that could not reach its explanation
        is not started (the verdict ends), and an element list that is running out closes with
        its next element, so a verdict cut by the budget still parses.
        """
        if row.state == "end":
            return set(self.eos)
        if row.state == "text":
            return None
        if row.state == "line" and not row.pending and remaining is not None and remaining < self.reserve:
            return set(self.eos)
        trie = self._trie(row, remaining)
        nxt = set(trie.next_tokens(row.pending))
        if row.state == "line" and not row.pending:
            nxt |= self.eos  # after a complete line the verdict may end
        return nxt

    def _trie(self, row: _Row, remaining: int | None = None) -> _Trie:
        if row.state == "start":
            return self.first
        if row.state == "line":
            return self.line
        # another element (" X,") only while the budget still holds it and a closing one (" Y |")
        closing = remaining is not None and not row.pending and remaining <= self.element_reserve
        return self.last_element if closing or row.elements + 1 >= self.max_elements else self.element

    def advance(self, row: _Row, token: int) -> None:
        """Read one generated token (assumed allowed)."""
        if token in self.eos or row.state == "end":
            row.state = "end"
            return
        if row.state == "text":
            if token == self.newline:
                row.state, row.pending = ("line", ()) if row.lines < self.max_lines else ("end", ())
            else:
                row.text_tokens += 1
            return
        trie = self.element if row.state == "element" else self._trie(row)  # last_element's strings are in element's
        row.pending = (*row.pending, token)
        meaning = trie.done.get(row.pending)
        if meaning is None:
            return
        row.pending = ()
        row.history.append(meaning)
        if meaning == "none":
            row.state = "end"
        elif meaning == "line":
            row.state, row.elements, row.lines = "element", 0, row.lines + 1
        elif meaning == "more":
            row.elements += 1
        else:  # the last element: the explanation follows
            row.state, row.text_tokens = "text", 0

    def must_break(self, row: _Row) -> bool:
        return row.state == "text" and row.text_tokens >= self.max_text_tokens


_REGEX_SPECIAL = set("\\.^$*+?()[]{}|")


def _regex_literal(text: str) -> str:
    """``text`` as a regex matching exactly it: every metacharacter escaped, nothing else.

    (``re.escape`` also escapes spaces and other characters that some servers' regex
    dialects — xgrammar, outlines — do not take escaped.)
    """
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def verdict_regex(element_ids, *, max_lines: int = MAX_LINES, max_elements: int = MAX_ELEMENTS,
                  max_text_chars: int = MAX_TEXT_CHARS) -> str:
    """The verdict grammar as one regular expression, for a server that decodes under a regex.

    vLLM's structured outputs (``{"structured_outputs": {"regex": ...}}``, ``guided_regex`` before
    v0.12) take it; it describes what :class:`VerdictGrammar` allows, with the explanation's
    length in characters instead of tokens. Element ids are written literally (a hostile id —
    quotes, brackets, DOT or regex syntax — is escaped, and one the line format cannot carry is left out).
    """
    elements = grammar_elements(element_ids)
    if not elements:
        raise ValueError("a verdict grammar needs at least one element to name")
    category = "(" + "|".join(_regex_literal(c) for c in CATEGORIES) + ")"
    element = "(" + "|".join(_regex_literal(e) for e in sorted(elements, key=len, reverse=True)) + ")"
    more = f"( {element},){{0,{max_elements - 1}}}" if max_elements > 1 else ""
    line = f"MISTAKE: {category} \\|{more} {element} \\| ?[^\\s|][^\\n\\r]{{0,{max_text_chars - 1}}}"
    return f"(NONE|{line}(\\n{line}){{0,{max_lines - 1}}})"


_LINE_HEAD = re.compile(r"^MISTAKE: (?:%s) \|(?: [^,|\n]+,)* [^,|\n]+ \|" % "|".join(CATEGORIES))


def trim_incomplete(text: str) -> str:
    """A grammar-decoded verdict without its last line when that line stopped before its explanation.

    The budget or the repetition stop can end a row anywhere; a line cut inside its category or
    elements would make the whole verdict unreadable, so it goes (the lines before it stay).
    """
    head, sep, last = text.rpartition("\n")
    if not last.strip() or last.strip() == "NONE" or _LINE_HEAD.match(last):
        return text
    return head + sep if sep else ""


def _line_break_tokens(tokenizer, newline: int) -> tuple[int, ...]:
    out = []
    for token_id in range(len(tokenizer)):
        if token_id == newline:
            continue
        text = tokenizer.decode([token_id])
        if "\n" in text or "\r" in text:
            out.append(token_id)
    return tuple(out)


class VerdictConstraint:
    """A transformers logits processor: row ``i`` of the batch follows ``grammars[i]`` (None: free).

    ``width`` is the padded prompt length: generated tokens start there for every row;
    ``max_new_tokens`` the budget (see :meth:`VerdictGrammar.allowed`).
    """

    def __init__(self, grammars: list[VerdictGrammar | None], width: int, max_new_tokens: int | None = None):
        self.grammars, self.width, self.max_new_tokens = grammars, width, max_new_tokens
        self.rows = [_Row() for _ in grammars]
        self._masks: dict[int, Any] = {}

    def __call__(self, input_ids, scores):
        import torch

        new = input_ids.shape[1] - self.width
        for i, grammar in enumerate(self.grammars):
            if grammar is None:
                continue
            row = self.rows[i]
            while row.consumed < new:
                grammar.advance(row, int(input_ids[i, self.width + row.consumed]))
                row.consumed += 1
            remaining = None if self.max_new_tokens is None else self.max_new_tokens - new
            allowed = grammar.allowed(row, remaining)
            if allowed is None:  # free text: no line-break tokens but the newline itself
                if grammar.must_break(row):
                    allowed = {grammar.newline}
                else:
                    breaks = grammar.line_break_tokens()
                    if id(breaks) not in self._masks:
                        self._masks[id(breaks)] = torch.tensor(breaks, dtype=torch.long, device=scores.device)
                    scores[i, self._masks[id(breaks)]] = float("-inf")
                    continue
            if not allowed:  # nothing fits (cannot happen with a well-formed grammar): end the row
                allowed = set(grammar.eos)
            keep = torch.tensor(sorted(allowed), dtype=torch.long, device=scores.device)
            masked = torch.full_like(scores[i], float("-inf"))
            masked[keep] = scores[i, keep]
            scores[i] = masked
        return scores
