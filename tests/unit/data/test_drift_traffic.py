"""The drifted-traffic generator: kinds, mix, shift in length/labels/register, redaction."""

from __future__ import annotations

import pandas as pd
import pytest

from loopline.config import DataConfig
from loopline.data.corpus import INTENTS, generate_tickets
from loopline.data.drift import (
    DEFAULT_MIX,
    DRIFT_COLUMNS,
    DRIFT_KINDS,
    NEW_INTENTS,
    OFF_TOPIC,
    drift_counts,
    generate_drifted_traffic,
)
from loopline.data.pii import find_pii

_SPANISH = ("porfa", "quiero", "necesito", "mi ", "cómo", "dónde", "hola", "oye", "me ")
_FORMAL = ("Dear Sir or Madam", "To whom it may concern", "I should be", "I hereby", "I write")


@pytest.fixture(scope="module")
def drifted() -> pd.DataFrame:
    return generate_drifted_traffic(500, seed=5)


def test_columns_and_determinism(drifted: pd.DataFrame) -> None:
    assert list(drifted.columns) == list(DRIFT_COLUMNS)
    assert set(DRIFT_COLUMNS) - {"drift_kind"} <= set(drifted.columns)
    pd.testing.assert_frame_equal(drifted, generate_drifted_traffic(500, seed=5))
    assert not drifted["prompt"].equals(generate_drifted_traffic(500, seed=6)["prompt"])
    assert drifted["ticket_id"].is_unique


def test_kind_counts_follow_the_mix(drifted: pd.DataFrame) -> None:
    counts = drifted["drift_kind"].value_counts().to_dict()
    assert counts == {k: round(500 * w) for k, w in DEFAULT_MIX.items()}
    custom = generate_drifted_traffic(101, seed=1, mix={"none": 3, "new_intent": 1})
    assert custom["drift_kind"].value_counts().to_dict() == {"none": 76, "new_intent": 25}
    assert sum(drift_counts(7, {"register": 1, "off_domain": 1, "long_prompt": 1}).values()) == 7


def test_each_kind_shifts_the_data(drifted: pd.DataFrame) -> None:
    by_kind = {k: drifted[drifted["drift_kind"] == k] for k in DRIFT_KINDS}
    assert set(by_kind["new_intent"]["intent"]) == set(NEW_INTENTS)
    assert not set(NEW_INTENTS) & set(INTENTS)
    assert set(by_kind["off_domain"]["intent"]) == {OFF_TOPIC}
    for kind in ("long_prompt", "register"):
        assert set(by_kind[kind]["intent"]) <= set(INTENTS)

    corpus = generate_tickets(DataConfig(n_tickets=500))
    long_median = by_kind["long_prompt"]["prompt"].str.len().median()
    assert long_median > 4 * corpus["prompt"].str.len().median()
    assert (by_kind["long_prompt"]["prompt"].str.len() > 600).mean() > 0.5

    register = by_kind["register"]["prompt"]
    spanish = register.map(lambda p: any(w in p.lower() for w in _SPANISH))
    formal = register.map(lambda p: any(w in p for w in _FORMAL))
    assert (spanish | formal).all()
    assert spanish.any() and formal.any()
    # none of the drifted prompts is a corpus prompt
    assert not set(drifted["prompt"]) & set(corpus["prompt"])


def test_drifted_traffic_is_redacted(drifted: pd.DataFrame) -> None:
    assert (drifted["customer_email"] == "[EMAIL]").all()
    for text in (*drifted["prompt"], *drifted["reply"]):
        assert find_pii(text) == []
    raw = generate_drifted_traffic(50, seed=5, redact=False)
    assert raw["customer_email"].str.contains("@").all()


@pytest.mark.parametrize(
    ("mix", "error"),
    [
        ({"bogus": 1.0}, "unknown drift kind"),
        ({"none": -1.0, "register": 2.0}, ">= 0"),
        ({"none": 0.0}, "must not all be zero"),
    ],
)
def test_invalid_mix_is_rejected(mix: dict[str, float], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        generate_drifted_traffic(10, seed=0, mix=mix)
