"""The official ``openai`` client works through the router, streamed and not."""

from __future__ import annotations

import time

import pytest
from openai import OpenAI

from tests.routing.router_harness import CANDIDATE_REPLY, STABLE_REPLY, RouterProc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_openai_client_non_stream_and_stream(router: RouterProc) -> None:
    client = OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0, timeout=10)
    since = time.time()
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "where is my refund"}]
    )
    assert reply.choices[0].message.content == STABLE_REPLY

    router.admin.set_weight(100)
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "reset"}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 3  # arrived as several events
    assert "".join(pieces) == CANDIDATE_REPLY

    raw = client.completions.with_raw_response.create(model="tiny", prompt="hi")
    assert raw.headers["x-loopline-arm"] == "candidate"
    assert raw.parse().choices[0].text == CANDIDATE_REPLY
    assert [m.id for m in client.models.list()] == ["candidate"]

    stats = router.admin.stats(since)
    assert len(stats["stable"]) == 1 and stats["stable"].quality[0] == 1.0
    cand = stats["candidate"]
    assert len(cand) == 3 and cand.ok.all()
    quality = cand.quality.tolist()
    assert quality[0] != quality[0]  # streamed: no quality (NaN)
    assert quality[1] == 1.0  # completions text scored
    assert quality[2] != quality[2]  # /v1/models: not a completion
    client.close()
