"""Byte-level BPE tokenizer for the tiny model, trained on the training texts.

Byte-level means every string round-trips (no unknown token); the prompt-format markers from
:mod:`loopline.models.prompting` are single special tokens that BPE never splits or merges.
The result is an ordinary ``PreTrainedTokenizerFast`` that saves with ``save_pretrained`` and
loads back with ``AutoTokenizer.from_pretrained``.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from loopline.models.prompting import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    model_max_length: int = 256,
    min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` with the prompt-format special tokens.

    ``vocab_size`` counts everything: the special tokens, the 256 byte symbols and the merges.
    Training is deterministic for the same texts in the same order.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    minimum = len(SPECIAL_TOKENS) + len(alphabet)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size {vocab_size} is below the byte alphabet + specials ({minimum})"
        )

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)],
        model_max_length=model_max_length,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
