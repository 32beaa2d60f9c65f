from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from loopline.config import Settings
from loopline.governance.audit import GENESIS, AuditIntegrityError, AuditTrail


def filled(path: Path, n: int = 5) -> AuditTrail:
    trail = AuditTrail(path)
    actions = ["register", "promote", "reject", "keep_champion", "deploy", "rollback"]
    for i in range(n):
        trail.append(actions[i % len(actions)], f"loopline-support/v{i + 1}", "ci", {"i": i})
    return trail


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write(path: Path, rows: list[str]) -> None:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")


def test_append_chains_entries(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "state" / "audit.jsonl")
    first = trail.append(
        "register", "loopline-support/v1", "alice", {"run_id": "abc", "path": Path("/x")}
    )
    second = trail.append("promote", "loopline-support/v1", "pipeline", {"from": None, "to": "1"})

    assert (first.seq, second.seq) == (0, 1)
    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash
    assert first.details == {"run_id": "abc", "path": "/x"}  # stored as JSON types
    assert datetime.fromisoformat(first.timestamp).utcoffset() is not None  # UTC, explicit

    # hash = sha256 of the canonical JSON of the entry without "hash"
    body = {k: v for k, v in json.loads(lines(trail.path)[0]).items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert first.hash == hashlib.sha256(canonical.encode()).hexdigest()

    assert trail.entries() == [first, second]
    assert first.model_dump(mode="json")["details"] == {"run_id": "abc", "path": "/x"}
    assert trail.head() == second
    trail.verify()
    trail.verify(expected_head=second.hash)


def test_reopened_trail_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled(path, 3)
    entry = AuditTrail(path).append("deploy", "loopline-support/v3", "ops", {})
    assert entry.seq == 3
    AuditTrail(path).verify()


def test_empty_and_missing_trails_verify(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "none.jsonl")
    trail.verify()
    assert trail.entries() == [] and trail.head() is None


def test_for_settings_uses_state_dir(small_settings: Callable[..., Settings]) -> None:
    settings = small_settings()
    assert AuditTrail.for_settings(settings).path == settings.state_path / "audit.jsonl"


def test_edit_is_detected_at_the_edited_entry(tmp_path: Path) -> None:
    trail = filled(tmp_path / "audit.jsonl")
    rows = lines(trail.path)
    data = json.loads(rows[2])
    data["actor"] = "mallory"
    rows[2] = json.dumps(data)
    write(trail.path, rows)
    with pytest.raises(AuditIntegrityError, match="seq 2") as err:
        trail.verify()
    assert err.value.seq == 2
    assert "edited" in err.value.reason


def test_edit_with_recomputed_hash_is_detected_at_the_next_entry(tmp_path: Path) -> None:
    trail = filled(tmp_path / "audit.jsonl")
    rows = lines(trail.path)
    entry = trail.entries()[1]
    body = entry.model_copy(update={"details": {"i": 99}}).body()
    digest = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    rows[1] = json.dumps({**body, "hash": digest})
    write(trail.path, rows)
    with pytest.raises(AuditIntegrityError) as err:
        trail.verify()
    assert err.value.seq == 2


def test_deletion_is_detected(tmp_path: Path) -> None:
    trail = filled(tmp_path / "audit.jsonl")
    rows = lines(trail.path)
    del rows[1]
    write(trail.path, rows)
    with pytest.raises(AuditIntegrityError) as err:
        trail.verify()
    assert err.value.seq == 1


def test_reordering_is_detected(tmp_path: Path) -> None:
    trail = filled(tmp_path / "audit.jsonl")
    rows = lines(trail.path)
    rows[2], rows[3] = rows[3], rows[2]
    write(trail.path, rows)
    with pytest.raises(AuditIntegrityError) as err:
        trail.verify()
    assert err.value.seq == 2


def test_truncated_tail_is_caught_with_an_expected_head(tmp_path: Path) -> None:
    trail = filled(tmp_path / "audit.jsonl")
    head = trail.head()
    assert head is not None
    write(trail.path, lines(trail.path)[:-1])
    trail.verify()  # a shorter chain is still a chain...
    with pytest.raises(AuditIntegrityError) as err:
        trail.verify(expected_head=head.hash)  # ...but not the one we recorded
    assert err.value.seq == 4


def test_torn_last_line_blocks_verify_and_append(tmp_path: Path) -> None:
    trail = filled(tmp_path / "audit.jsonl", 2)
    with trail.path.open("ab") as fh:
        fh.write(b'{"seq": 2, "timest')
    with pytest.raises(AuditIntegrityError, match="incomplete"):
        trail.verify()
    with pytest.raises(AuditIntegrityError, match="incomplete"):
        trail.append("promote", "x", "y", {})


def test_invalid_input_is_refused(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    with pytest.raises(ValueError, match="action"):
        trail.append("", "s", "a", {})
    with pytest.raises(ValueError, match="finite"):
        trail.append("promote", "s", "a", {"x": float("nan")})
    assert not trail.path.exists() or trail.entries() == []


def _append_many(path: str, worker: int, count: int) -> None:
    trail = AuditTrail(path)
    for i in range(count):
        trail.append("deploy", f"worker-{worker}", "test", {"i": i})


def test_concurrent_appends_from_processes_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_many, args=(str(path), w, 25)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    trail = AuditTrail(path)
    trail.verify()
    entries = trail.entries()
    assert [e.seq for e in entries] == list(range(100))
    for w in range(4):
        mine = [e.details["i"] for e in entries if e.subject == f"worker-{w}"]
        assert mine == list(range(25))  # each process's entries in its own order


def test_unreadable_entry_is_named(tmp_path: Path) -> None:
    trail = filled(tmp_path / "audit.jsonl", 3)
    rows = lines(trail.path)
    rows[1] = rows[1].replace('"seq":1', '"seq":"one"')
    write(trail.path, rows)
    with pytest.raises(AuditIntegrityError, match="unreadable") as err:
        trail.verify()
    assert err.value.seq == 1
