"""A small, seeded support-ticket generator for model tests (independent of loopline.data).

Shaped like the real corpus: several intents, varied phrasings with slots (order numbers,
products, names), a reference reply per intent that repeats some slots, a share of ambiguous
messages and a little label noise.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pandas as pd

PRODUCTS = [
    "blue kettle", "desk lamp", "running shoes", "phone case", "coffee grinder", "yoga mat",
    "wireless mouse", "rain jacket", "water bottle", "backpack", "office chair", "headphones",
]  # fmt: skip
NAMES = ["Anna", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas"]
OPENERS = ["", "Hi, ", "Hello, ", "Good morning, ", "Hey there. ", "Dear support, "]
CLOSERS = ["", " Thanks.", " Thank you!", " Please help.", " Regards, {name}", " Cheers"]

INTENTS: dict[str, dict[str, list[str]]] = {
    "lost_parcel": {
        "asks": [
            "my order {order} never arrived",
            "the {product} I ordered ({order}) has not shown up yet",
            "tracking for order {order} has not moved in a week",
            "where is my package? order number {order}",
            "I think parcel {order} got lost in transit",
        ],
        "reply": [
            "I'm sorry your parcel {order} has not arrived. I have opened a trace with the "
            "carrier and will update you within 48 hours."
        ],
    },
    "refund_request": {
        "asks": [
            "I would like a refund for order {order}",
            "please give me my money back for the {product}",
            "can I get a refund on {order}? the {product} was not what I expected",
            "I returned the {product} last week, when do I get refunded",
            "refund please, order {order}",
        ],
        "reply": [
            "I have started a refund for order {order}. The money will be back on your card "
            "within 5 to 7 business days."
        ],
    },
    "damaged_item": {
        "asks": [
            "the {product} arrived broken",
            "order {order} came damaged, the box was crushed",
            "my {product} has a crack in it",
            "the {product} from order {order} is scratched and dented",
        ],
        "reply": [
            "I'm sorry the {product} arrived damaged. Please send a photo and I will ship a "
            "replacement right away."
        ],
    },
    "cancel_order": {
        "asks": [
            "please cancel order {order}",
            "I changed my mind, cancel the {product}",
            "can you stop order {order} before it ships",
            "I want to cancel my order for the {product}",
        ],
        "reply": [
            "Order {order} has been cancelled. You will not be charged and will get a "
            "confirmation email shortly."
        ],
    },
    "change_address": {
        "asks": [
            "I need to change the delivery address for order {order}",
            "I moved, can you send the {product} to my new address",
            "wrong address on order {order}, please update it",
            "can I update my shipping address",
        ],
        "reply": [
            "I can update the address for order {order}. Please reply with the full new "
            "address and I will change it before dispatch."
        ],
    },
    "account_login": {
        "asks": [
            "I can't log in to my account",
            "password reset email never comes",
            "my account is locked after too many attempts",
            "the login page keeps saying invalid password",
        ],
        "reply": [
            "I have sent a password reset link to your email. If it does not arrive in ten "
            "minutes, check your spam folder."
        ],
    },
    "billing_question": {
        "asks": [
            "I was charged twice for order {order}",
            "there is a charge on my card I don't recognise",
            "why is my invoice higher than the price of the {product}",
            "can you explain the fee on order {order}",
        ],
        "reply": [
            "I have checked the billing for order {order}. I will correct any duplicate "
            "charge and send you an updated invoice."
        ],
    },
    "product_question": {
        "asks": [
            "does the {product} come with a warranty",
            "is the {product} available in other colours",
            "what size is the {product}",
            "can you tell me more about the {product}",
        ],
        "reply": [
            "Thanks for asking about the {product}. It comes with a two year warranty and "
            "you can find all sizes and colours on the product page."
        ],
    },
}
AMBIGUOUS_JOIN = [" and also ", ". Also, ", ", plus "]


def _fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


def make_tickets(n: int, seed: int = 0, *, label_noise: float = 0.02) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    intents = sorted(INTENTS)
    rows = []
    for i in range(n):
        intent = rng.choice(intents)
        slots = {
            "order": f"#{rng.randint(10000, 99999)}",
            "product": rng.choice(PRODUCTS),
            "name": rng.choice(NAMES),
        }
        ask = _fill(rng.choice(INTENTS[intent]["asks"]), slots)
        if rng.random() < 0.08:  # ambiguous: a second concern tacked on
            other = rng.choice([x for x in intents if x != intent])
            ask += rng.choice(AMBIGUOUS_JOIN) + _fill(rng.choice(INTENTS[other]["asks"]), slots)
        prompt = rng.choice(OPENERS) + ask + _fill(rng.choice(CLOSERS), slots)
        reply = f"Hi {slots['name']}, " + _fill(rng.choice(INTENTS[intent]["reply"]), slots)
        label = rng.choice(intents) if rng.random() < label_noise else intent
        rows.append(
            {
                "ticket_id": f"t{seed}-{i:05d}",
                "prompt": prompt,
                "intent": label,
                "reply": reply,
            }
        )
    return rows


def write_prepared(
    dest: Path, n: int, seed: int = 0, fractions: tuple[float, float] = (0.8, 0.1)
) -> Path:
    """Write ``train/val/test.jsonl`` like the prepare stage does; returns ``dest``."""
    rows = make_tickets(n, seed)
    n_train = int(n * fractions[0])
    n_val = int(n * fractions[1])
    parts = {
        "train": rows[:n_train],
        "val": rows[n_train : n_train + n_val],
        "test": rows[n_train + n_val :],
    }
    dest.mkdir(parents=True, exist_ok=True)
    for split, part in parts.items():
        with (dest / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for row in part:
                fh.write(json.dumps({**row, "split": split}) + "\n")
    return dest


def read_frame(prepared: Path, split: str) -> pd.DataFrame:
    return pd.read_json(prepared / f"{split}.jsonl", lines=True)
