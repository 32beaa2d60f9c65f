from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from loopline.config import Settings
from loopline.registry.lineage import (
    Lineage,
    LineageError,
    collect_lineage,
    config_hash,
    data_tag,
    dvc_hashes,
    git_state,
    model_fingerprint,
    safe_key,
)

DVC_LOCK = """\
schema: '2.0'
stages:
  generate:
    cmd: loopline stage generate
    deps:
    - path: src/loopline/data
      hash: md5
      md5: 0f1e2d3c4b5a69788796a5b4c3d2e1f0.dir
      size: 20480
      nfiles: 5
    params:
      params.yaml:
        data:
          seed: 7
    outs:
    - path: data/raw
      hash: md5
      md5: 11111111111111111111111111111111.dir
      size: 501234
      nfiles: 1
  prepare:
    cmd: loopline stage prepare
    deps:
    - path: data/raw
      hash: md5
      md5: 11111111111111111111111111111111.dir
      size: 501234
      nfiles: 1
    outs:
    - path: data/prepared
      hash: md5
      md5: 22222222222222222222222222222222.dir
      size: 402000
      nfiles: 3
  validate:
    cmd: loopline stage validate
    deps:
    - path: data/prepared
      hash: md5
      md5: 22222222222222222222222222222222.dir
    outs:
    - path: artifacts/reports/data_validation.json
      hash: md5
      md5: 3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c
"""

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def make_model(folder: Path) -> Path:
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (folder / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}')
    (folder / "loopline_model.json").write_text('{"kind": "tiny"}')
    return folder


@needs_git
def test_git_state_clean_then_dirty(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("a")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "first")
    head = git(repo, "rev-parse", "HEAD")

    assert git_state(repo) == (head, False)
    (repo / "a.txt").write_text("changed")
    assert git_state(repo) == (head, True)
    git(repo, "checkout", "-q", "--", "a.txt")
    (repo / "new.txt").write_text("untracked")
    assert git_state(repo) == (head, True)


def test_git_state_outside_a_repository_is_unknown(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    # /tmp is not inside a repository; make sure no parent of tmp_path is either
    ceiling = {"GIT_CEILING_DIRECTORIES": str(tmp_path)}
    old = {k: os.environ.get(k) for k in ceiling}
    os.environ.update(ceiling)
    try:
        assert git_state(plain) == ("unknown", None)
        assert git_state(tmp_path / "missing") == ("unknown", None)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_dvc_hashes_reads_data_not_source_code(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        DVC_LOCK.replace(
            "    - path: data/raw\n",
            "    - path: external/seed.csv\n      md5: 5e5e\n    - path: data/raw\n",
            1,
        )
    )
    assert dvc_hashes(lock) == {
        "external/seed.csv": "5e5e",
        "data/raw": "11111111111111111111111111111111.dir",
        "data/prepared": "22222222222222222222222222222222.dir",
        "artifacts/reports/data_validation.json": "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c",
    }


def test_dvc_hashes_prefers_the_producing_stage(tmp_path: Path) -> None:
    # A stale dep hash in a consumer must not override what the producer recorded.
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        DVC_LOCK.replace(
            "  prepare:\n    cmd: loopline stage prepare\n    deps:\n    - path: data/raw\n"
            "      hash: md5\n      md5: 11111111111111111111111111111111.dir",
            "  prepare:\n    cmd: loopline stage prepare\n    deps:\n    - path: data/raw\n"
            "      hash: md5\n      md5: 99999999999999999999999999999999.dir",
        )
    )
    assert dvc_hashes(lock)["data/raw"] == "11111111111111111111111111111111.dir"


def test_dvc_hashes_missing_and_malformed(tmp_path: Path) -> None:
    assert dvc_hashes(tmp_path / "dvc.lock") == {}
    bad = tmp_path / "bad.lock"
    bad.write_text("stages: [unclosed")
    with pytest.raises(LineageError, match="not valid YAML"):
        dvc_hashes(bad)
    wrong = tmp_path / "wrong.lock"
    wrong.write_text("- a list\n")
    with pytest.raises(LineageError, match="'stages' mapping"):
        dvc_hashes(wrong)


def test_fingerprint_is_stable_order_independent_and_content_sensitive(tmp_path: Path) -> None:
    a = make_model(tmp_path / "a")
    fp = model_fingerprint(a)
    assert len(fp) == 64 and fp == model_fingerprint(a)

    # Same content written in another order (different inode/listing order), another place.
    b = tmp_path / "b"
    (b / "tokenizer").mkdir(parents=True)
    for rel in [
        "loopline_model.json",
        "tokenizer/tokenizer.json",
        "model.safetensors",
        "config.json",
    ]:
        shutil.copyfile(a / rel, b / rel)
    assert model_fingerprint(b) == fp

    # One byte of the weights changes the fingerprint.
    weights = bytearray((b / "model.safetensors").read_bytes())
    weights[100] ^= 1
    (b / "model.safetensors").write_bytes(bytes(weights))
    assert model_fingerprint(b) != fp

    # Renaming a file (same bytes) changes it too: paths are part of the content.
    c = tmp_path / "c"
    shutil.copytree(a, c)
    (c / "config.json").rename(c / "config2.json")
    assert model_fingerprint(c) != fp

    # Moving bytes between files with the same concatenation changes it.
    d, e = tmp_path / "d", tmp_path / "e"
    d.mkdir()
    e.mkdir()
    (d / "x").write_text("ab")
    (d / "y").write_text("c")
    (e / "x").write_text("a")
    (e / "y").write_text("bc")
    assert model_fingerprint(d) != model_fingerprint(e)


def test_fingerprint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        model_fingerprint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        model_fingerprint(tmp_path / "empty")


def test_config_hash_ignores_root_but_not_values(
    small_settings: Callable[..., Settings],
) -> None:
    s1 = small_settings()
    s2 = s1.model_copy(update={"root": "/somewhere/else"})
    assert config_hash(s1) == config_hash(s2)
    s3 = small_settings(training={"max_steps": 41})
    assert config_hash(s3) != config_hash(s1)
    assert len(config_hash(s1)) == 64


@needs_git
def test_collect_lineage_and_tags(tmp_path: Path, small_settings: Callable[..., Settings]) -> None:
    settings = small_settings()
    root = Path(settings.root)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "config")
    (root / "dvc.lock").write_text(DVC_LOCK)  # untracked: the tree is now dirty
    model = make_model(tmp_path / "model")

    lineage = collect_lineage(settings, model)
    assert lineage.git_commit == git(root, "rev-parse", "HEAD")
    assert lineage.git_dirty is True
    assert lineage.model_fingerprint == model_fingerprint(model)
    assert lineage.config_hash == config_hash(settings)

    tags = lineage.as_tags()
    assert tags["loopline.git_commit"] == lineage.git_commit
    assert tags["loopline.git_dirty"] == "true"
    assert tags["loopline.data.raw_md5"] == "11111111111111111111111111111111.dir"
    assert tags["loopline.data.prepared_md5"] == "22222222222222222222222222222222.dir"
    assert not any("src/" in key for key in tags)  # code is pinned by the commit
    assert tags["loopline.model_fingerprint"] == lineage.model_fingerprint
    assert tags["loopline.config_hash"] == lineage.config_hash
    assert len(tags["loopline.data_version"]) == 64
    assert all(k.startswith("loopline.") and isinstance(v, str) for k, v in tags.items())

    back = Lineage.from_tags({**tags, "mlflow.user": "x"})
    assert back.git_commit == lineage.git_commit and back.git_dirty is True
    assert back.model_fingerprint == lineage.model_fingerprint
    assert back.data_hashes["prepared"] == "22222222222222222222222222222222.dir"
    assert back.as_tags() == tags


def test_lineage_without_git_or_dvc(
    tmp_path: Path, small_settings: Callable[..., Settings]
) -> None:
    settings = small_settings()
    os.environ["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    try:
        lineage = collect_lineage(settings, make_model(tmp_path / "m"), extra={"pipeline": "p1"})
    finally:
        os.environ.pop("GIT_CEILING_DIRECTORIES")
    tags = lineage.as_tags()
    assert tags["loopline.git_commit"] == "unknown"
    assert tags["loopline.git_dirty"] == "unknown"
    assert tags["loopline.data_version"] == "unknown"
    assert tags["loopline.pipeline"] == "p1"
    assert not [k for k in tags if k.startswith("loopline.data.")]


@pytest.mark.parametrize(
    ("path", "tag"),
    [
        ("data/prepared", "loopline.data.prepared_md5"),
        ("data/raw/", "loopline.data.raw_md5"),
        ("artifacts/model", "loopline.data.artifacts/model_md5"),
        ("weird@name/x y", "loopline.data.weird_name/x y_md5"),
    ],
)
def test_data_tag_names(path: str, tag: str) -> None:
    assert data_tag(path) == tag


def test_safe_key_drops_dot_segments() -> None:
    assert safe_key("../a/./b") == "a/b"
    assert safe_key("slice.billing issue.rouge_l") == "slice.billing issue.rouge_l"
