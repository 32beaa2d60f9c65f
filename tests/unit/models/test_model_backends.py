"""Generator backends and model specs: tiny, hf:<path>, openai, bare paths."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from loopline.models.base import (
    Generation,
    Generator,
    ModelSpec,
    ModelSpecError,
    load_generator,
    parse_spec,
)
from loopline.models.folder import MARKER_FILE
from loopline.models.hf import CausalLMGenerator
from loopline.models.prompting import EOS_TOKEN, format_prompt, parse_output
from tests.model.tickets import make_tickets

PROMPTS = [r["prompt"] for r in make_tickets(40, seed=21)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> CausalLMGenerator:
    gen = load_generator(f"tiny:{tiny_model_dir}")
    assert isinstance(gen, CausalLMGenerator)
    return gen


# -- specs --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("tiny:/m/a", ModelSpec("tiny", "/m/a")),
        ("hf: /m/b ", ModelSpec("hf", "/m/b")),
        ("openai:http://127.0.0.1:8000/v1", ModelSpec("openai", "http://127.0.0.1:8000/v1")),
        ("/m/c", ModelSpec(None, "/m/c")),
        ("C:\\models\\x", ModelSpec(None, "C:\\models\\x")),
        ("relative/dir", ModelSpec(None, "relative/dir")),
    ],
)
def test_parse_spec(spec: str, expected: ModelSpec) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "   ", "tiny:", "hf:  "])
def test_parse_spec_rejects_empty_targets(spec: str) -> None:
    with pytest.raises(ModelSpecError):
        parse_spec(spec)


def test_openai_backend_names_a_bad_url_or_an_unreachable_server() -> None:
    with pytest.raises(ModelSpecError, match="http"):
        load_generator("openai:ftp://x/v1#m")
    with pytest.raises(ModelSpecError, match=r"cannot list models at http://127\.0\.0\.1:9/v1"):
        load_generator("openai:http://127.0.0.1:9/v1")


def test_missing_folder_is_an_error_naming_the_spec(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError, match=r"tiny:.*nope.*not a directory"):
        load_generator(f"tiny:{tmp_path / 'nope'}")


def test_a_folder_that_is_no_model_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ModelSpecError, match=r"no config\.json"):
        load_generator(f"hf:{tmp_path}")


def test_tiny_spec_requires_the_marker(tiny_model_dir: Path, tmp_path: Path) -> None:
    plain = shutil.copytree(tiny_model_dir, tmp_path / "plain")
    (plain / MARKER_FILE).unlink()
    with pytest.raises(ModelSpecError, match="no Loopline marker"):
        load_generator(f"tiny:{plain}")


def test_a_marker_from_a_newer_loopline_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    newer = shutil.copytree(tiny_model_dir, tmp_path / "newer")
    (newer / MARKER_FILE).write_text('{"format_version": 99, "prompt_format": "loopline-v1"}')
    with pytest.raises(ModelSpecError, match="newer"):
        load_generator(str(newer))


def test_a_bare_path_is_detected_by_its_marker(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert load_generator(str(tiny_model_dir)).name.startswith("tiny:")
    plain = shutil.copytree(tiny_model_dir, tmp_path / "plain")
    (plain / MARKER_FILE).unlink()
    assert load_generator(str(plain)).name.startswith("hf:")


# -- generation ---------------------------------------------------------------------------
def test_tiny_backend_is_a_generator_and_answers_in_the_learned_format(
    tiny: CausalLMGenerator,
) -> None:
    assert isinstance(tiny, Generator)
    outs = tiny.generate(PROMPTS[:8], max_new_tokens=48)
    assert len(outs) == 8 and all(isinstance(o, Generation) for o in outs)
    parsed = [parse_output(o.text) for o in outs]
    assert sum(p.intent is not None for p in parsed) >= 6  # it learned "intent: <label>"
    assert all(EOS_TOKEN not in o.text for o in outs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outs[0].text = "x"  # type: ignore[misc]


def test_batched_greedy_output_equals_one_at_a_time(tiny: CausalLMGenerator) -> None:
    prompts = [*PROMPTS[:12], "short", "a much longer message " * 6]
    batched = tiny.generate(prompts, max_new_tokens=40)
    single = [tiny.generate([p], max_new_tokens=40)[0] for p in prompts]
    assert [b.text for b in batched] == [s.text for s in single]
    assert [b.completion_tokens for b in batched] == [s.completion_tokens for s in single]
    assert len({b.completion_tokens for b in batched}) > 1  # rows stopped at different steps


def test_chunks_by_max_batch_size_without_changing_answers(tiny_model_dir: Path) -> None:
    small = load_generator(str(tiny_model_dir), max_batch_size=3)
    big = load_generator(str(tiny_model_dir), max_batch_size=64)
    a = small.generate(PROMPTS[:7], max_new_tokens=24)
    b = big.generate(PROMPTS[:7], max_new_tokens=24)
    assert [x.text for x in a] == [y.text for y in b]


def test_token_counts_and_latency_are_recorded(tiny: CausalLMGenerator) -> None:
    outs = tiny.generate(PROMPTS[:4], max_new_tokens=40)
    for prompt, out in zip(PROMPTS[:4], outs, strict=True):
        assert out.prompt_tokens == len(tiny.encoder.prompt_ids(prompt))
        assert 1 <= out.completion_tokens <= 40
        assert out.latency_s > 0
    stopped = [o for o in outs if o.completion_tokens < 40]
    for out in stopped:  # the stop token is counted but not shown
        body = tiny.tokenizer(out.text, add_special_tokens=False)["input_ids"]
        assert len(body) == out.completion_tokens - 1
    assert len({o.latency_s for o in outs}) == 1  # one batch: everyone waited as long
    one = tiny.generate(PROMPTS[:2], max_new_tokens=1)
    assert [o.completion_tokens for o in one] == [1, 1]


def test_sampling_is_reproducible_with_a_seed(tiny: CausalLMGenerator) -> None:
    a = tiny.generate(PROMPTS[:6], max_new_tokens=24, temperature=1.5, seed=7)
    b = tiny.generate(PROMPTS[:6], max_new_tokens=24, temperature=1.5, seed=7)
    c = tiny.generate(PROMPTS[:6], max_new_tokens=24, temperature=1.5, seed=8)
    assert [x.text for x in a] == [y.text for y in b]
    assert [x.text for x in a] != [z.text for z in c]


def test_long_prompts_are_truncated_to_fit_the_context(tiny: CausalLMGenerator) -> None:
    huge = "my parcel is lost " * 200
    out = tiny.generate([huge], max_new_tokens=16)[0]
    assert out.prompt_tokens <= min(128, 256 - 16)  # trained max_seq_len / context room
    with pytest.raises(ValueError, match="context"):
        tiny.generate(["hi"], max_new_tokens=256)


def test_bad_arguments_are_refused(tiny: CausalLMGenerator) -> None:
    with pytest.raises(TypeError):
        tiny.generate("one string", max_new_tokens=4)
    with pytest.raises(ValueError):
        tiny.generate(["x"], max_new_tokens=0)
    with pytest.raises(ValueError):
        tiny.generate(["x"], max_new_tokens=4, temperature=-1)
    assert tiny.generate([], max_new_tokens=4) == []


def test_hf_backend_uses_the_chat_template_when_the_folder_has_one(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = shutil.copytree(tiny_model_dir, tmp_path / "chat")
    (folder / MARKER_FILE).unlink()
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[bot] "
    (folder / "chat_template.jinja").write_text(template)
    gen = load_generator(f"hf:{folder}")
    assert isinstance(gen, CausalLMGenerator)
    ids = gen.encoder.prompt_ids("where is my order")
    assert gen.tokenizer.decode(ids) == "[user] where is my order\n[bot] "
    assert len(gen.generate(["where is my order"], max_new_tokens=5)) == 1

    plain = shutil.copytree(tiny_model_dir, tmp_path / "plain")
    (plain / MARKER_FILE).unlink()
    no_template = load_generator(f"hf:{plain}")
    assert isinstance(no_template, CausalLMGenerator)
    assert no_template.tokenizer.decode(no_template.encoder.prompt_ids("hi")) == format_prompt("hi")
