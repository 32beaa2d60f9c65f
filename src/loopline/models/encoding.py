"""Token ids for prompts and training examples, computed the same way in training and serving.

The prompt layout comes from a *template* function (``prompting.format_prompt`` for models
trained by Loopline, the tokenizer's chat template for other models). The template is applied
once to a sentinel to find the text before and after the customer message; the message itself
is encoded with special-token parsing switched off, so a customer who types ``<|endoftext|>``
gets those characters, not a control token. Long messages are truncated at the token level,
keeping their beginning and the full template around them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from loopline.models.prompting import format_prompt, format_target

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_SENTINEL = "\x00LOOPLINE_MESSAGE\x00"


class PromptEncoder:
    """Encode customer messages (and training targets) for one tokenizer and template."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        template: Callable[[str], str] = format_prompt,
        *,
        add_bos: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.template = template
        rendered = template(_SENTINEL)
        if rendered.count(_SENTINEL) != 1:
            raise ValueError("prompt template must contain the message exactly once")
        head, tail = rendered.split(_SENTINEL)
        self._head_text, self._tail_text = head, tail
        # What the tokenizer prepends on its own (BOS), if anything. Chat templates usually
        # spell it out themselves, so their callers pass add_bos=False.
        bos = self._ids("", special=True) if add_bos else []
        self.head_ids = bos + self._ids(head)
        self.tail_ids = self._ids(tail)
        eos = tokenizer.eos_token_id
        if not isinstance(eos, int):
            raise ValueError("tokenizer has no eos_token; set one before training or generating")
        self.eos_id: int = eos

    def _ids(self, text: str, *, special: bool = False, literal: bool = False) -> list[int]:
        if not text and not special:
            return []
        enc = self.tokenizer(text, add_special_tokens=special, split_special_tokens=literal)
        return list(enc["input_ids"])

    def message_ids(self, message: str) -> list[int]:
        """The customer message alone, as the template would place it (special tokens literal)."""
        rendered = self.template(message)
        body = rendered[len(self._head_text) : len(rendered) - len(self._tail_text)]
        return self._ids(body, literal=True)

    def prompt_ids(self, message: str, max_tokens: int | None = None) -> list[int]:
        """Template + message; the message is cut (keeping its start) to fit ``max_tokens``."""
        body = self.message_ids(message)
        if max_tokens is not None:
            budget = max_tokens - len(self.head_ids) - len(self.tail_ids)
            if budget < 1:
                raise ValueError(
                    f"max_tokens={max_tokens} leaves no room for the message "
                    f"(template alone is {len(self.head_ids) + len(self.tail_ids)} tokens)"
                )
            body = body[:budget]
        return self.head_ids + body + self.tail_ids

    def target_ids(self, intent: str, reply: str) -> list[int]:
        """``format_target`` followed by EOS: what the model learns to produce."""
        return [*self._ids(format_target(intent, reply), literal=True), self.eos_id]

    def example_ids(
        self, message: str, intent: str, reply: str, max_seq_len: int
    ) -> tuple[list[int], int]:
        """``(input_ids, n_prompt)`` for one training example, at most ``max_seq_len`` long.

        The message gives way first (down to half the sequence), then the reply is cut (losing
        its EOS) so the sequence fits.
        """
        target = self.target_ids(intent, reply)
        minimum = len(self.head_ids) + len(self.tail_ids) + 1
        prompt_budget = max(max_seq_len - len(target), max_seq_len // 2, minimum)
        prompt = self.prompt_ids(message, prompt_budget)
        ids = (prompt + target)[:max_seq_len]
        return ids, min(len(prompt), len(ids))
