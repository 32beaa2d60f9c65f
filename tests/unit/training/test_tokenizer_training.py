"""The byte-level BPE tokenizer trained for the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from loopline.models.prompting import (
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    format_prompt,
    format_target,
)
from loopline.training.tokenizer import train_tokenizer
from tests.model.tickets import make_tickets

TEXTS = [
    format_prompt(r["prompt"]) + format_target(r["intent"], r["reply"])
    for r in make_tickets(300, seed=5)
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer(TEXTS, 512)


def test_vocab_size_and_special_tokens_are_single_ids(tokenizer: PreTrainedTokenizerFast) -> None:
    assert len(tokenizer) == 512
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS)))  # first in the vocabulary, one id each
    assert tokenizer.eos_token == EOS_TOKEN and tokenizer.eos_token_id == ids[0]
    assert tokenizer.pad_token == PAD_TOKEN and tokenizer.pad_token_id == ids[1]
    encoded = tokenizer(format_prompt("hi"), add_special_tokens=False)["input_ids"]
    assert encoded[0] == tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS[2])


@pytest.mark.parametrize(
    "text",
    [
        TEXTS[0] + EOS_TOKEN,
        "Ünïcödé, emoji 😀, tabs\tand  double  spaces\n\nand CJK 注文",
        "order #12345 costs €19.99 (incl. VAT)",
    ],
)
def test_round_trip_is_lossless(tokenizer: PreTrainedTokenizerFast, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids


def test_learned_merges_compress_the_domain_text(tokenizer: PreTrainedTokenizerFast) -> None:
    text = TEXTS[1]
    n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert n_tokens < len(text.encode("utf-8")) / 2


def test_training_is_deterministic(tokenizer: PreTrainedTokenizerFast) -> None:
    again = train_tokenizer(TEXTS, 512)
    assert again.get_vocab() == tokenizer.get_vocab()


def test_saves_and_reloads_as_an_ordinary_hf_tokenizer(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert loaded(TEXTS[2])["input_ids"] == tokenizer(TEXTS[2])["input_ids"]
    assert (loaded.eos_token, loaded.pad_token) == (EOS_TOKEN, PAD_TOKEN)


def test_too_small_a_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(TEXTS, 100)
