"""Reference-free quality descriptors of one served reply, and the score a canary compares.

A live request has no reference answer, so the canary analysis compares versions on what can
be read off the reply alone. Each descriptor is 0 (bad) or 1 (good) or in between; the score
is their weighted mean in [0, 1]:

* ``well_formed``: the reply follows the trained format (an ``intent:`` line naming a known
  intent, then a ``reply:``). A model that lost its format is the most common regression.
* ``non_empty``: the reply text has at least a few words.
* ``length_ok``: the reply is neither truncated to nothing nor a run-on (word count within
  ``[MIN_WORDS, MAX_WORDS]``; linearly penalised outside).
* ``not_repetitive``: the share of distinct word trigrams (degenerate loops repeat them).
* ``no_pii``: the reply does not leak personal data (the redactor's detectors find none).

The score is deliberately simple and cheap (microseconds), computed for every request by the
router (:mod:`loopline.routing`). Where a golden set is configured the release driver adds
reference-based scores on probe prompts (:func:`loopline.evaluation.metrics` does those).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from loopline.data.corpus import INTENTS
from loopline.data.pii import find_pii
from loopline.models.prompting import parse_output

MIN_WORDS = 4
MAX_WORDS = 120
WEIGHTS: dict[str, float] = {
    "well_formed": 0.35,
    "non_empty": 0.15,
    "length_ok": 0.15,
    "not_repetitive": 0.2,
    "no_pii": 0.15,
}
_KNOWN = frozenset(INTENTS)


@dataclass(frozen=True)
class ReplyDescriptors:
    well_formed: float
    non_empty: float
    length_ok: float
    not_repetitive: float
    no_pii: float

    @property
    def score(self) -> float:
        values = asdict(self)
        return sum(WEIGHTS[name] * values[name] for name in WEIGHTS) / sum(WEIGHTS.values())


def describe_reply(text: str) -> ReplyDescriptors:
    """Descriptors of a model's raw output ``text`` (the assistant message)."""
    parsed = parse_output(text)
    words = parsed.reply.split()
    n = len(words)
    if n < MIN_WORDS:
        length_ok = n / MIN_WORDS
    elif n > MAX_WORDS:
        length_ok = max(0.0, 1.0 - (n - MAX_WORDS) / MAX_WORDS)
    else:
        length_ok = 1.0
    trigrams = [tuple(words[i : i + 3]) for i in range(max(0, n - 2))]
    not_repetitive = len(set(trigrams)) / len(trigrams) if trigrams else (1.0 if n else 0.0)
    return ReplyDescriptors(
        well_formed=1.0 if parsed.intent in _KNOWN and "reply:" in text else 0.0,
        non_empty=1.0 if n >= 2 else 0.0,
        length_ok=length_ok,
        not_repetitive=not_repetitive,
        no_pii=0.0 if find_pii(parsed.reply) else 1.0,
    )


def reply_quality(text: str) -> float:
    """The quality score in [0, 1] of one reply (see the module docstring)."""
    return describe_reply(text).score
