"""Detect and redact personal data in ticket text.

Four kinds are recognised and replaced by placeholders:

* ``EMAIL`` → ``[EMAIL]``: ordinary ``local@domain.tld`` addresses.
* ``CARD``  → ``[CARD]``: 13–19 digit numbers written contiguously or in the usual card
  groupings (``4-4-4-4``, ``4-6-5``, ...), accepted only when they pass the Luhn check, so
  long order or reference numbers are left alone.
* ``PHONE`` → ``[PHONE]``: international numbers (``+44 20 7946 0958``, ``+14155550132``) and
  North-American formats (``(415) 555-0132``, ``415-555-0132``, ``415.555.0132``).
* ``NAME``  → ``[NAME]``: names from the corpus name lists (in Title, lower or UPPER case),
  and capitalised names after "my name is" / "name:" or in a sign-off at the end of a
  message ("Regards, Jane Doe", "-- Jane").

The email, card and phone patterns are exported (``EMAIL_PATTERN``, ``CARD_PATTERN``,
``PHONE_PATTERN``, ``NAME_LIST_PATTERN``) so that the dataset contract checks redacted data
with the same expressions the redactor uses. ``CARD_PATTERN`` alone does not apply the Luhn
check, so the contract treats any remaining card-shaped number as suspicious.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pandas loads only where frames are redacted, not in the model server
    import pandas as pd

from loopline.data.names import ALL_NAMES

PiiKind = Literal["EMAIL", "CARD", "PHONE", "NAME"]
PII_KINDS: tuple[PiiKind, ...] = ("EMAIL", "CARD", "PHONE", "NAME")
PLACEHOLDERS: Mapping[PiiKind, str] = {kind: f"[{kind}]" for kind in PII_KINDS}

# Higher wins when two detections overlap (an email contains a name, a card looks like digits).
_PRIORITY: Mapping[PiiKind, int] = {"EMAIL": 4, "CARD": 3, "PHONE": 2, "NAME": 1}

EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"

# Separators inside numbers: one of " .-", or a short run of them ("4111  1111", "415 - 555").
_SEP = r"[ .-]{1,3}"
_SEP_OPT = r"[ .-]{0,3}"
_CARD_SEP = r"[ -]{1,3}"

CARD_PATTERN = (
    r"\d(?<![\d-]\d)"  # a first digit not preceded by a digit or '-' (fast to scan for)
    rf"(?:\d{{3}}{_CARD_SEP}\d{{4}}{_CARD_SEP}\d{{4}}{_CARD_SEP}\d{{1,7}}"  # 4-4-4-x: 13..19
    rf"|\d{{3}}{_CARD_SEP}\d{{6}}{_CARD_SEP}\d{{4,5}}"  # 4-6-5 (Amex) and 4-6-4 (Diners)
    r"|\d{12,18})"  # contiguous
    r"(?![\d-])"
)

PHONE_PATTERN = (
    r"(?<![\w+])(?:"
    # international: +CC, optional (area), 2-4 more digit groups; at least 8 digits after '+'
    r"\+(?=(?:[ .()-]{0,3}\d){8})"
    rf"\d{{1,3}}{_SEP_OPT}(?:\(\d{{1,4}}\){_SEP_OPT})?\d{{2,4}}(?:{_SEP_OPT}\d{{2,4}}){{1,3}}"
    # North America: (415) 555-0132, 415-555-0132, 415.555.0132, 415 555 0132
    rf"|(?:\(\d{{3}}\)[ ]{{0,3}}|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}}"
    r")(?![\w])"
)


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex alternation of ``words`` factored by common prefixes (much faster to scan)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:  # a word ends here and longer ones continue
            body = f"(?:{body})?" if len(branches) == 1 else body + "?"
        return body

    return emit(trie)


# Names as written (Title), in lower-case chat and in shouted UPPER case. Case-sensitive
# variants scan about twice as fast as one case-insensitive pattern.
NAME_LIST_PATTERN = (
    r"\b" + _trie_pattern(sorted({v for n in ALL_NAMES for v in (n, n.lower(), n.upper())})) + r"\b"
)

_EMAIL = re.compile(EMAIL_PATTERN)
_CARD = re.compile(CARD_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
_NAME_LIST = re.compile(NAME_LIST_PATTERN)

_NAME_WORD = r"[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)?"
# "my name is Jane Doe", "name: jane" (first word in any case, a second word only if capitalised)
_NAME_INTRO = re.compile(
    r"(?i:\bmy name is|\bmy name's|\bname:)\s+"
    r"(?P<name>[A-Za-z][a-z]+(?:['-][A-Za-z]?[a-z]+)?(?:\s+" + _NAME_WORD + r")?)"
)
# a sign-off at the very end: "Regards,\nJane Doe", "Thanks, Jane", "-- Jane Doe"
_SIGNOFF = re.compile(
    r"(?:^|(?<=[\s.!?]))"
    r"(?:--|—|(?i:kind regards|best regards|regards|best|thanks|thank you|cheers|sincerely))"
    r"[,!.]?[ \t]*\n?[ \t]*"
    r"(?P<name>" + _NAME_WORD + r"(?:[ \t]+" + _NAME_WORD + r")?)\s*\Z"
)
# capitalised words that follow the triggers above but are not names
_NOT_NAMES = frozenset(
    {
        "team", "support", "loopline", "again", "everyone", "all", "sir", "madam", "you",
        "so", "very", "much", "not", "the", "a", "an", "in", "on", "for", "and", "from",
        "also", "customer", "service", "guys", "folks", "advance",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PiiHit:
    """One piece of personal data found in a text: its kind and ``text[start:end]``."""

    kind: PiiKind
    start: int
    end: int
    text: str

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)


def luhn_valid(digits: str) -> bool:
    """Luhn checksum of a string of digits (separators are ignored)."""
    nums = [int(c) for c in digits if c.isdigit()]
    if not nums:
        return False
    total = 0
    for i, n in enumerate(reversed(nums)):
        doubled = n * 2 if i % 2 == 1 else n
        total += doubled - 9 if doubled > 9 else doubled
    return total % 10 == 0


def _candidates(text: str) -> Iterable[PiiHit]:
    for m in _EMAIL.finditer(text):
        yield PiiHit("EMAIL", m.start(), m.end(), m.group())
    for m in _CARD.finditer(text):
        if luhn_valid(m.group()):
            yield PiiHit("CARD", m.start(), m.end(), m.group())
    for m in _PHONE.finditer(text):
        yield PiiHit("PHONE", m.start(), m.end(), m.group())
    for m in _NAME_LIST.finditer(text):
        yield PiiHit("NAME", m.start(), m.end(), m.group())
    for pattern in (_NAME_INTRO, _SIGNOFF):
        for m in pattern.finditer(text):
            base = m.start("name")
            words = list(re.finditer(r"\S+", m.group("name")))
            # drop non-name words ("Thanks, Support Team"; "my name is not ...")
            while words and words[-1].group().lower() in _NOT_NAMES:
                words.pop()
            if not words or words[0].group().lower() in _NOT_NAMES:
                continue
            start, end = base + words[0].start(), base + words[-1].end()
            yield PiiHit("NAME", start, end, text[start:end])


def find_pii(text: str) -> list[PiiHit]:
    """All personal data in ``text``, non-overlapping, in order of position.

    Overlaps are resolved by kind (email > card > phone > name), then by length. Adjacent
    name hits separated only by spaces ("Jane" "Doe") are merged into one.
    """
    if not text:
        return []
    ranked = sorted(
        _candidates(text), key=lambda h: (-_PRIORITY[h.kind], -(h.end - h.start), h.start)
    )
    taken: list[PiiHit] = []
    for hit in ranked:
        if all(hit.end <= t.start or hit.start >= t.end for t in taken):
            taken.append(hit)
    taken.sort(key=lambda h: h.start)
    merged: list[PiiHit] = []
    for hit in taken:
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and prev.kind == "NAME"
            and hit.kind == "NAME"
            and text[prev.end : hit.start].strip(" \t") == ""
        ):
            merged[-1] = PiiHit("NAME", prev.start, hit.end, text[prev.start : hit.end])
        else:
            merged.append(hit)
    return merged


def redact_text(text: str) -> str:
    """``text`` with every detected piece of personal data replaced by its placeholder."""
    return _redact(text)[0]


def _redact(text: str) -> tuple[str, list[PiiHit]]:
    hits = find_pii(text)
    if not hits:
        return text, hits
    out: list[str] = []
    pos = 0
    for hit in hits:
        out.append(text[pos : hit.start])
        out.append(PLACEHOLDERS[hit.kind])
        pos = hit.end
    out.append(text[pos:])
    return "".join(out), hits


@dataclass(frozen=True)
class RedactionStats:
    """What ``redact_frame`` replaced: counts per kind and per column, rows touched."""

    counts: Mapping[str, int] = field(default_factory=dict)
    by_column: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    rows_redacted: int = 0
    values_scanned: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "counts": dict(self.counts),
            "by_column": {c: dict(k) for c, k in self.by_column.items()},
            "rows_redacted": self.rows_redacted,
            "values_scanned": self.values_scanned,
            "total": self.total,
        }


def redact_frame(df: pd.DataFrame, columns: Iterable[str]) -> tuple[pd.DataFrame, RedactionStats]:
    """Redact the text ``columns`` of ``df``; returns a copy and what was replaced.

    Non-string values (missing values, numbers) are left as they are. A column that is
    absent raises ``KeyError`` naming it: silently skipping it could leak data.
    """
    import pandas as pd

    columns = list(columns)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"cannot redact missing column(s): {missing}")
    out = df.copy()
    totals: Counter[str] = Counter({k: 0 for k in PII_KINDS})
    by_column: dict[str, dict[str, int]] = {}
    touched = pd.Series(False, index=df.index)
    scanned = 0
    for col in columns:
        col_counts: Counter[str] = Counter({k: 0 for k in PII_KINDS})
        values = df[col].tolist()
        redacted: list[object] = []
        hit_rows: list[bool] = []
        for value in values:
            if isinstance(value, str):
                scanned += 1
                new, hits = _redact(value)
                col_counts.update(h.kind for h in hits)
                redacted.append(new)
                hit_rows.append(bool(hits))
            else:
                redacted.append(value)
                hit_rows.append(False)
        out[col] = pd.Series(redacted, index=df.index, dtype=df[col].dtype)
        touched |= pd.Series(hit_rows, index=df.index)
        by_column[col] = dict(col_counts)
        totals.update(col_counts)
    stats = RedactionStats(
        counts=dict(totals),
        by_column=by_column,
        rows_redacted=int(touched.sum()),
        values_scanned=scanned,
    )
    return out, stats
