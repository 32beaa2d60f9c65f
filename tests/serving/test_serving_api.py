"""`loopline serve` as a real process: the OpenAI client, hostile input, limits, metrics,
the request log and checksum verification."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from loopline.serving.request_log import read_request_log
from tests.serving.support import ServingProject, free_port, running_server, serve_command

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(serving_project: ServingProject, tmp_path_factory: pytest.TempPathFactory) -> Any:
    logs = tmp_path_factory.mktemp("requests")
    with running_server(
        serving_project.root,
        "--request-log",
        str(logs),
        "--set",
        "serving.cache_size=64",
        "--set",
        "serving.max_prompt_chars=2000",
        "--set",
        "serving.max_body_bytes=65536",
        log_dir=logs.parent,
    ) as srv:
        srv.request_log = logs  # type: ignore[attr-defined]
        yield srv


def test_openai_client_works_unchanged(server: Any, serving_project: ServingProject) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    models = [m.id for m in client.models.list().data]
    name = serving_project.settings.model.name
    assert models == [name, f"{name}:1"]

    chat = client.chat.completions.create(
        model=name,
        messages=[
            {"role": "system", "content": "You are a support agent."},
            {"role": "user", "content": "I was charged twice for my subscription this month"},
        ],
        max_tokens=24,
    )
    text = chat.choices[0].message.content or ""
    assert text.startswith("intent:")  # the trained format
    assert chat.usage is not None and chat.usage.completion_tokens <= 24
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
    assert chat.system_fingerprint == "v1"

    stream = client.chat.completions.create(
        model=name,
        messages=[
            {"role": "user", "content": "I was charged twice for my subscription this month"}
        ],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy decoding: the same reply, streamed
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    done = client.completions.create(
        model=f"{name}:1", prompt=["my parcel never arrived", "reset my password"], max_tokens=16
    )
    assert [c.index for c in done.choices] == [0, 1]
    assert all(c.text and c.finish_reason in {"stop", "length"} for c in done.choices)


BAD: list[tuple[str, str, bytes | None, int]] = [
    ("not json", "/v1/chat/completions", b"{not json", 400),
    ("array body", "/v1/chat/completions", b"[1, 2]", 400),
    ("deep nesting", "/v1/completions", b"[" * 30000 + b"]" * 30000, 400),
    ("no messages", "/v1/chat/completions", b'{"model": "M"}', 400),
    ("empty messages", "/v1/chat/completions", b'{"model": "M", "messages": []}', 400),
    (
        "bad role",
        "/v1/chat/completions",
        b'{"model":"M","messages":[{"role":"x","content":"a"}]}',
        400,
    ),
    (
        "image part",
        "/v1/chat/completions",
        b'{"model":"M","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}',
        400,
    ),
    (
        "no user turn",
        "/v1/chat/completions",
        b'{"model":"M","messages":[{"role":"system","content":"a"}]}',
        400,
    ),
    (
        "huge max_tokens",
        "/v1/completions",
        b'{"model":"M","prompt":"hi","max_tokens":1000000000}',
        400,
    ),
    ("negative max_tokens", "/v1/completions", b'{"model":"M","prompt":"hi","max_tokens":-5}', 400),
    (
        "string max_tokens",
        "/v1/completions",
        b'{"model":"M","prompt":"hi","max_tokens":"lots"}',
        400,
    ),
    ("hot temperature", "/v1/completions", b'{"model":"M","prompt":"hi","temperature":9}', 400),
    ("n=3", "/v1/completions", b'{"model":"M","prompt":"hi","n":3}', 400),
    (
        "too many stops",
        "/v1/completions",
        b'{"model":"M","prompt":"hi","stop":["a","b","c","d","e"]}',
        400,
    ),
    ("empty prompt", "/v1/completions", b'{"model":"M","prompt":"   "}', 400),
    ("empty prompt list", "/v1/completions", b'{"model":"M","prompt":[]}', 400),
    (
        "prompt list too long",
        "/v1/completions",
        json.dumps({"model": "M", "prompt": ["a"] * 50}).encode(),
        400,
    ),
    ("numeric prompt", "/v1/completions", b'{"model":"M","prompt":12}', 400),
    (
        "long prompt",
        "/v1/completions",
        json.dumps({"model": "M", "prompt": "word " * 1000}).encode(),
        400,
    ),
    (
        "oversize body",
        "/v1/completions",
        json.dumps({"model": "M", "prompt": "x" * 100_000}).encode(),
        413,
    ),
    ("unknown model", "/v1/completions", b'{"model":"gpt-9","prompt":"hi"}', 404),
    ("control chars", "/v1/completions", b'{"model":"M","prompt":"\\u0000\\u0007 bell"}', 200),
    ("lone surrogate", "/v1/completions", b'{"model":"M","prompt":"hi \\ud800"}', 400),
    ("wrong method", "/v1/completions", None, 405),
]


@pytest.mark.parametrize("bad", BAD, ids=[c[0] for c in BAD])
def test_hostile_requests_get_a_clear_4xx_never_a_5xx(
    server: Any, serving_project: ServingProject, bad: tuple[str, str, bytes | None, int]
) -> None:
    case, path, body, status = bad
    name = serving_project.settings.model.name.encode()
    if body is None:
        resp = httpx.get(server.url + path, timeout=30)
    else:
        payload = body.replace(b'"model":"M"', b'"model":"' + name + b'"').replace(
            b'"model": "M"', b'"model": "' + name + b'"'
        )
        resp = httpx.post(
            server.url + path,
            content=payload,
            headers={"content-type": "application/json"},
            timeout=30,
        )
    assert resp.status_code == status, resp.text
    if status not in {200, 405}:
        error = resp.json()["error"]
        assert error["message"] and error["type"]
    if case == "long prompt":
        assert "at most 2000" in resp.json()["error"]["message"]
        assert resp.json()["error"]["param"] == "prompt"
    if case == "huge max_tokens":
        assert resp.json()["error"]["param"] == "max_tokens"


def test_chunked_oversize_body_is_refused(server: Any) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1024

    resp = httpx.post(f"{server.url}/v1/completions", content=chunks(), timeout=30)
    assert resp.status_code == 413


def test_every_request_is_logged_once_with_pii_redacted(
    server: Any, serving_project: ServingProject
) -> None:
    name = serving_project.settings.model.name
    ids = [uuid.uuid4().hex for _ in range(24)]
    prompt = "I am jane.doe@example.com and my parcel never arrived"

    def send(i: int) -> int:
        body: dict[str, Any] = {"model": name, "prompt": prompt if i % 3 else "", "max_tokens": 8}
        resp = httpx.post(
            f"{server.url}/v1/completions",
            json=body,
            headers={"x-request-id": ids[i], "x-loopline-variant": "candidate"},
            timeout=60,
        )
        assert resp.headers["x-request-id"] == ids[i]
        return resp.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(len(ids))))
    assert statuses.count(400) == 8 and statuses.count(200) == 16
    entries = [e for e in read_request_log(server.request_log) if e["request_id"] in set(ids)]
    assert sorted(e["request_id"] for e in entries) == sorted(ids)  # each exactly once
    ok = [e for e in entries if e["status"] == 200]
    assert len(ok) == 16 and all(e["variant"] == "candidate" for e in entries)
    assert all("jane.doe@example.com" not in json.dumps(e) for e in entries)
    assert all("[EMAIL]" in e["prompt"] for e in ok)
    assert all(e["model_version"] == "1" and e["completion_tokens"] > 0 for e in ok)
    assert sum(e["cache_hit"] for e in ok) >= 1  # same prompt: later ones from the cache
    fresh = [e for e in ok if not e["cache_hit"]]
    assert all(e["cost_usd"] > 0 and e["ttft_ms"] is not None for e in fresh)
    assert all(e["error"] for e in entries if e["status"] == 400)


def test_metrics_cover_requests_tokens_batches_cache_and_cost(server: Any) -> None:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for name in (
        "loopline_requests_total",
        "loopline_request_latency_seconds_bucket",
        "loopline_time_to_first_token_seconds_bucket",
        "loopline_tokens_total",
        "loopline_batch_size_bucket",
        "loopline_queue_depth",
        "loopline_cache_hits_total",
        "loopline_cost_dollars_total",
        "loopline_model_info",
    ):
        assert name in text, name
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    ok = [
        v
        for k, v in samples.items()
        if k.startswith("loopline_requests_total{") and 'status="200"' in k
    ]
    assert sum(ok) > 0
    assert samples["loopline_cache_hits_total"] >= 1


def test_full_queue_answers_503_with_retry_after(
    serving_project: ServingProject, tmp_path: Path
) -> None:
    name = serving_project.settings.model.name
    with running_server(
        serving_project.root,
        "--request-log", str(tmp_path / "log"),
        "--set", "serving.max_queue=1",
        "--set", "serving.max_batch_size=1",
        "--set", "serving.max_wait_ms=0",
        "--set", "serving.faults.extra_latency_ms=0",
        log_dir=tmp_path,
    ) as srv:  # fmt: skip

        def send(i: int) -> httpx.Response:
            body = {"model": name, "prompt": f"request {i} about my invoice", "max_tokens": 64}
            return httpx.post(f"{srv.url}/v1/completions", json=body, timeout=60)

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(send, range(16)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    busy = [r for r in responses if r.status_code == 503]
    assert busy and codes.count(200) >= 2
    assert all(r.headers["retry-after"] == "1" for r in busy)
    assert all(r.json()["error"]["type"] == "server_overloaded" for r in busy)


def test_tampered_model_refuses_to_start(serving_project: ServingProject, tmp_path: Path) -> None:
    settings = serving_project.settings
    cache = settings.path(settings.serving.model_cache_dir)
    folder = next(cache.glob(f"{settings.model.name}-v1-*"))  # downloaded by the server above
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    config = copy / "config.json"
    config.write_text(config.read_text().replace("}", ', "tampered": true}', 1))
    port = str(free_port())
    from loopline.registry.lineage import model_fingerprint

    good = model_fingerprint(folder)
    done = subprocess.run(
        serve_command(
            serving_project.root, ["--model-dir", str(copy), "--checksum", good, "--port", port]
        ),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "checksum" in done.stderr and "refusing to load" in done.stderr
    # The same folder with no checksum at all is refused too.
    done = subprocess.run(
        serve_command(serving_project.root, ["--model-dir", str(copy), "--port", port]),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "pass --checksum" in done.stderr
    # And a registry cache folder changed on disk is caught at the next start.
    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-8] + b"\x00" * 8)
        done = subprocess.run(
            serve_command(serving_project.root, ["--port", port]),
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1 and "refusing to load" in done.stderr
    finally:
        weights.write_bytes(original)


def test_model_dir_with_checksum_file_serves(
    serving_project: ServingProject, tmp_path: Path
) -> None:
    from loopline.registry.lineage import model_fingerprint

    folder = serving_project.models["good"]
    (tmp_path / "pkg").mkdir()
    shutil.copytree(folder, tmp_path / "pkg" / "model")
    (tmp_path / "pkg" / "MODEL_CHECKSUM").write_text(model_fingerprint(folder) + "\n")
    with running_server(
        serving_project.root,
        "--model-dir", str(tmp_path / "pkg" / "model"),
        "--version-label", "7",
        "--request-log", str(tmp_path / "log"),
        log_dir=tmp_path,
    ) as srv:  # fmt: skip
        ready = httpx.get(f"{srv.url}/readyz", timeout=5).json()
        assert ready["version"] == "7" and ready["fingerprint"] == model_fingerprint(folder)


def test_openai_backend_generates_what_the_model_generates_in_process(
    server: Any, serving_project: ServingProject
) -> None:
    from loopline.models.base import load_generator

    prompts = ["my parcel never arrived", "please reset my password", "cancel my plan"]
    remote = load_generator(f"openai:{server.url}/v1", max_batch_size=3)
    assert remote.name.endswith(f"#{serving_project.settings.model.name}")  # first listed
    local = load_generator(str(serving_project.models["good"]))
    got = remote.generate(prompts, max_new_tokens=16)
    want = local.generate(prompts, max_new_tokens=16)
    assert [g.text for g in got] == [w.text for w in want]
    assert [g.completion_tokens for g in got] == [w.completion_tokens for w in want]


def test_model_process_serves_the_same_replies_and_reports_its_death(
    server: Any, serving_project: ServingProject, tmp_path: Path
) -> None:
    import os
    import signal

    name = serving_project.settings.model.name
    body = {"model": name, "prompt": ["my parcel never arrived", "reset my password"],
            "max_tokens": 16}  # fmt: skip
    want = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60).json()
    with running_server(
        serving_project.root,
        "--request-log", str(tmp_path / "log"),
        "--set", "serving.model_process=true",
        log_dir=tmp_path,
    ) as srv:  # fmt: skip
        got = httpx.post(f"{srv.url}/v1/completions", json=body, timeout=60).json()
        assert [c["text"] for c in got["choices"]] == [c["text"] for c in want["choices"]]
        children = [
            int(p)
            for p in Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
        ]
        assert children  # the model runs in a child process
        for child in children:
            os.kill(child, signal.SIGKILL)
        time.sleep(0.5)
        assert httpx.get(f"{srv.url}/readyz", timeout=5).status_code == 503
        fresh = {**body, "prompt": "a prompt the cache has not seen"}
        dead = httpx.post(f"{srv.url}/v1/completions", json=fresh, timeout=60)
        assert dead.status_code == 500 and "model process" in dead.json()["error"]["message"]
