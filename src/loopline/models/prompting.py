"""The one place that defines how a ticket becomes model input and how output is read back.

Training, evaluation and serving all go through these functions so that the format the model
learned is the format it is asked in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

USER_TOKEN = "<|user|>"
ASSISTANT_TOKEN = "<|assistant|>"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN, USER_TOKEN, ASSISTANT_TOKEN)

_INTENT_LINE = re.compile(r"^\s*intent:\s*([a-z_]+)\s*$", re.MULTILINE)
_REPLY = re.compile(r"reply:\s*(.*)", re.DOTALL)


def format_prompt(prompt: str) -> str:
    """Model input for a customer message; generation continues after it."""
    return f"{USER_TOKEN}\n{prompt.strip()}\n{ASSISTANT_TOKEN}\n"


def format_target(intent: str, reply: str) -> str:
    """What the model learns to produce after ``format_prompt`` (EOS is added by the trainer)."""
    return f"intent: {intent}\nreply: {reply.strip()}"


@dataclass(frozen=True)
class ParsedOutput:
    intent: str | None
    reply: str


def parse_output(text: str) -> ParsedOutput:
    """Read the intent label and reply out of generated text; tolerant of a missing label."""
    text = text.split(EOS_TOKEN, 1)[0]
    m = _INTENT_LINE.search(text)
    intent = m.group(1) if m else None
    r = _REPLY.search(text)
    reply = r.group(1).strip() if r else (text[m.end() :] if m else text).strip()
    return ParsedOutput(intent=intent, reply=reply)


# Name of the format above, recorded in every model folder Loopline trains. Change it (and
# only then) when format_prompt/format_target change in a way old models would not follow.
PROMPT_FORMAT = "loopline-v1"
