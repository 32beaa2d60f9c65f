"""The synthetic ticket corpus: determinism, labels, noise, ambiguity, lengths, details."""

from __future__ import annotations

import re
from functools import lru_cache

import pandas as pd
import pytest

from loopline.config import DataConfig
from loopline.data.corpus import CORPUS_COLUMNS, DUPLICATE_RATE, INTENTS, SPECS, generate_tickets
from loopline.data.pii import find_pii
from loopline.data.splits import normalise_prompt
from loopline.models.prompting import format_target, parse_output


@lru_cache(maxsize=8)
def tickets(cfg: DataConfig) -> pd.DataFrame:
    return generate_tickets(cfg)


def test_same_seed_same_corpus_and_other_seed_differs() -> None:
    cfg = DataConfig(n_tickets=300, seed=11)
    first, second = generate_tickets(cfg), generate_tickets(cfg)
    pd.testing.assert_frame_equal(first, second)
    other = generate_tickets(DataConfig(n_tickets=300, seed=12))
    assert (first["prompt"] != other["prompt"]).mean() > 0.9


def test_schema_labels_and_ids() -> None:
    df = tickets(DataConfig(n_tickets=1000))
    assert list(df.columns) == list(CORPUS_COLUMNS)
    assert len(df) == 1000
    assert df["ticket_id"].is_unique
    assert len(INTENTS) >= 8
    assert set(df["true_intent"]) == set(INTENTS)  # every intent occurs
    assert set(df["intent"]) <= set(INTENTS)
    for intent in INTENTS:
        assert re.fullmatch(r"[a-z]+(?:_[a-z]+)*", intent)
    assert df[["prompt", "reply", "customer_name", "customer_email"]].notna().all().all()


@pytest.mark.parametrize("intent", INTENTS)
def test_intent_label_survives_the_model_output_format(intent: str) -> None:
    parsed = parse_output(format_target(intent, "Some reply."))
    assert parsed.intent == intent


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.2])
def test_label_noise_rate_is_as_configured(rate: float) -> None:
    df = tickets(DataConfig(n_tickets=1000, label_noise=rate))
    noisy = df["is_noisy"]
    assert noisy.sum() == round(1000 * rate)
    # a noisy label is always a different, valid intent; clean rows keep the true one
    assert (df.loc[noisy, "intent"] != df.loc[noisy, "true_intent"]).all()
    assert (df.loc[~noisy, "intent"] == df.loc[~noisy, "true_intent"]).all()


def test_ambiguous_tickets_mix_in_a_second_intents_vocabulary() -> None:
    cfg = DataConfig(n_tickets=1000, ambiguous_rate=0.1)
    df = tickets(cfg)
    amb = df[df["is_ambiguous"]]
    originals = df["duplicate_of"].isna()
    assert originals.sum() == 1000 - round(999 * DUPLICATE_RATE)
    # exactly the configured share of first submissions (re-sent copies inherit the flag)
    assert (df["is_ambiguous"] & originals).sum() == round(originals.sum() * 0.1)
    for _, row in amb.iterrows():
        assert row["secondary_intent"] in INTENTS
        assert row["secondary_intent"] != row["true_intent"]
        hints = [h.lower() for h in SPECS[row["secondary_intent"]].hints]
        assert any(h in row["prompt"].lower() for h in hints), row["prompt"]
    assert df.loc[~df["is_ambiguous"], "secondary_intent"].isna().all()


@pytest.mark.parametrize(("max_prompt", "max_reply"), [(600, 400), (80, 60)])
def test_texts_respect_the_configured_limits(max_prompt: int, max_reply: int) -> None:
    df = tickets(DataConfig(n_tickets=500, max_prompt_chars=max_prompt, max_reply_chars=max_reply))
    assert df["prompt"].str.len().max() <= max_prompt
    assert df["reply"].str.len().max() <= max_reply
    assert df["prompt"].str.strip().str.len().min() > 10
    if max_prompt == 600:  # default limits: short, varied, 1-3 sentence replies
        assert df["reply"].str.len().max() < 300
        assert df["prompt"].nunique() > 0.9 * len(df)


def test_reply_repeats_the_order_number_from_the_message() -> None:
    df = tickets(DataConfig(n_tickets=1000))
    with_order = df[df["reply"].str.contains(r"#\d{7}")]
    assert len(with_order) > 300
    for prompt, reply in zip(with_order["prompt"], with_order["reply"], strict=True):
        order = re.search(r"#\d{7}", reply)
        assert order is not None and order.group() in prompt


def test_corpus_contains_personal_data_for_the_redactor() -> None:
    df = tickets(DataConfig(n_tickets=1000))
    kinds = {hit.kind for text in df["prompt"] for hit in find_pii(text)}
    assert kinds == {"EMAIL", "PHONE", "CARD", "NAME"}
    assert df["customer_email"].str.contains("@").all()
    assert all(len(name.split()) == 2 for name in df["customer_name"])


def test_resent_tickets_normalise_to_their_original() -> None:
    df = tickets(DataConfig(n_tickets=1000))
    copies = df[df["duplicate_of"].notna()]
    assert len(copies) == round(999 * DUPLICATE_RATE)
    by_id = df.set_index("ticket_id")
    for _, row in copies.iterrows():
        original = by_id.loc[row["duplicate_of"]]
        assert pd.isna(original["duplicate_of"])
        assert normalise_prompt(row["prompt"]) == normalise_prompt(original["prompt"])
        assert row["true_intent"] == original["true_intent"]
