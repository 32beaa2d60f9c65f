"""PII detection and redaction: every kind, the generator's formats, and no false alarms."""

from __future__ import annotations

import itertools
import random
import re

import pandas as pd
import pytest

from loopline.config import DataConfig
from loopline.data.corpus import (
    CUSTOMER_COLUMNS,
    fake_card,
    fake_email,
    fake_phone,
    generate_tickets,
)
from loopline.data.pii import find_pii, luhn_valid, redact_frame, redact_text


@pytest.mark.parametrize(
    ("text", "kind", "found"),
    [
        (
            "write to jane.doe+support@mail.example.org today",
            "EMAIL",
            "jane.doe+support@mail.example.org",
        ),
        ("ID: A.B_9@sub.example.co.uk.", "EMAIL", "A.B_9@sub.example.co.uk"),
        ("call (415) 555-0132 now", "PHONE", "(415) 555-0132"),
        ("call 415-555-0132", "PHONE", "415-555-0132"),
        ("call 415.555.0132", "PHONE", "415.555.0132"),
        ("call +1 415 555 0132", "PHONE", "+1 415 555 0132"),
        ("call +14155550132", "PHONE", "+14155550132"),
        ("call +44 20 7946 0958 pls", "PHONE", "+44 20 7946 0958"),
        ("call +1 (415) 555-0132", "PHONE", "+1 (415) 555-0132"),
        ("call  +44  20  7838  2402  if needed", "PHONE", "+44  20  7838  2402"),
        ("call me on 415 - 555 - 0132.", "PHONE", "415 - 555 - 0132"),
        ("card 4111 1111 1111 1111 was charged", "CARD", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111", "CARD", "4111-1111-1111-1111"),
        ("card 4111111111111111.", "CARD", "4111111111111111"),
        ("amex 3782 822463 10005", "CARD", "3782 822463 10005"),
        ("Card  number  4437  9846  0347  6003.", "CARD", "4437  9846  0347  6003"),
        ("amex 378282246310005", "CARD", "378282246310005"),
        ("Hello, my name is Priya Okafor and", "NAME", "Priya Okafor"),
        ("hi my name is mateo, help", "NAME", "mateo"),
        ("my name is Jonathan Appleseed.", "NAME", "Jonathan Appleseed"),  # not in the lists
        ("Please help.\nRegards,\nBartholomew Quist", "NAME", "Bartholomew Quist"),
        ("cant log in -- Gwendolyn", "NAME", "Gwendolyn"),
        ("It broke. Thanks, Horatio", "NAME", "Horatio"),
        ("SOFIA HERE, HELP", "NAME", "SOFIA"),
    ],
)
def test_each_kind_is_found_with_its_span(text: str, kind: str, found: str) -> None:
    hits = find_pii(text)
    assert [(h.kind, h.text) for h in hits] == [(kind, found)]
    start, end = hits[0].span
    assert text[start:end] == found
    assert redact_text(text) == text.replace(found, f"[{kind}]")


@pytest.mark.parametrize(
    "text",
    [
        "Where is order #4821937? It was due on 2024-03-15.",
        "I was charged $1,299.99 on 3/14 at 10:30 and again on March 3.",
        "Error E-403 in version 2.14.3, build 20240315.",
        "Reference 1234567890123456 (not a card: fails Luhn).",
        "Tracking 1Z999AA10123456784 has not moved for 12 days.",
        "Call centre hours are 9-17, extension 5550.",
        "Thanks, Support Team",
        "Thank you in advance",
        "I am writing about my Pro plan. This is urgent!",
        "my name is not important here",
        "Kind regards",
        "[NAME] and [EMAIL] are placeholders, [CARD] too",
        "Merci beaucoup, le colis 2024-0315-77 est arrivé.",
    ],
)
def test_ordinary_text_and_numbers_are_not_redacted(text: str) -> None:
    assert find_pii(text) == []
    assert redact_text(text) == text


def test_mixed_message_is_fully_redacted_and_overlaps_resolved() -> None:
    text = (
        "Hi, my name is Elena Rossi (elena.rossi@example.com). My card 5555 5555 5555 4444 "
        "was charged for order #4821937; call me on +44 20 7946 0958.\n-- Elena Rossi"
    )
    assert redact_text(text) == (
        "Hi, my name is [NAME] ([EMAIL]). My card [CARD] was charged for order #4821937; "
        "call me on [PHONE].\n-- [NAME]"
    )
    hits = find_pii(text)
    assert [h.kind for h in hits] == ["NAME", "EMAIL", "CARD", "PHONE", "NAME"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(hits))


def test_every_generator_format_is_detected_whole() -> None:
    rng = random.Random(3)
    for _ in range(300):
        for value, kind in (
            (fake_phone(rng), "PHONE"),
            (fake_card(rng), "CARD"),
            (fake_email("Ravi", "Tanaka", rng), "EMAIL"),
        ):
            text = f"contact: {value}."
            hits = find_pii(text)
            assert [(h.kind, h.text) for h in hits] == [(kind, value)], text


def test_resent_copies_with_odd_spacing_are_redacted_too() -> None:
    # a re-sent ticket doubles every space: numbers must still be found (this once leaked)
    df = generate_tickets(DataConfig(n_tickets=1500))
    spaced = df.loc[df["duplicate_of"].isna(), "prompt"].map(lambda p: "  ".join(p.split(" ")))
    for text in spaced:
        redacted = redact_text(text)
        digits = re.sub(r"[ ().+-]", "", redacted)
        assert not re.search(r"\d{9,}", digits), redacted
        assert "@" not in redacted


def test_luhn() -> None:
    assert luhn_valid("4111 1111 1111 1111")
    assert luhn_valid("378282246310005")
    assert not luhn_valid("4111 1111 1111 1112")
    assert not luhn_valid("")


def test_redact_frame_returns_a_redacted_copy_and_counts() -> None:
    df = pd.DataFrame(
        {
            "prompt": ["mail me at a.b@example.com or 415-555-0132", "order #1234567", None],
            "reply": ["Hi Priya, done.", "ok", "ok"],
            "n": [1, 2, 3],
        }
    )
    out, stats = redact_frame(df, ["prompt", "reply"])
    assert out["prompt"].tolist()[:2] == ["mail me at [EMAIL] or [PHONE]", "order #1234567"]
    assert out["prompt"].isna().iloc[2]
    assert out["reply"].iloc[0] == "Hi [NAME], done."
    assert df["prompt"].iloc[0].startswith("mail me at a.b@")  # input untouched
    assert stats.counts == {"EMAIL": 1, "PHONE": 1, "CARD": 0, "NAME": 1}
    assert stats.by_column["reply"]["NAME"] == 1
    assert stats.rows_redacted == 1
    assert stats.values_scanned == 5
    with pytest.raises(KeyError, match="customer_email"):
        redact_frame(df, ["prompt", "customer_email"])


def test_generated_corpus_has_no_pii_after_redaction() -> None:
    df = generate_tickets(DataConfig(n_tickets=600))
    out, stats = redact_frame(df, ("prompt", "reply", *CUSTOMER_COLUMNS))
    assert stats.counts["EMAIL"] >= 600 and stats.counts["PHONE"] >= 600
    assert (out["customer_name"] == "[NAME]").all()
    assert (out["customer_email"] == "[EMAIL]").all()
    assert (out["customer_phone"] == "[PHONE]").all()
    for text in (*out["prompt"], *out["reply"]):
        assert find_pii(text) == [], text
    # no name, email or card survives anywhere in the text
    names = set(df["customer_name"].str.split().explode())
    joined = " ".join(out["prompt"]) + " " + " ".join(out["reply"])
    leaked = [n for n in names if re.search(rf"\b{n}\b", joined, flags=re.IGNORECASE)]
    assert leaked == []
