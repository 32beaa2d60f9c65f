"""Shifted ticket traffic for the drift scenario.

``generate_drifted_traffic`` produces tickets with the corpus columns plus ``drift_kind``:

* ``new_intent``: requests for intents the model never saw (``NEW_INTENTS``).
* ``off_domain``: questions that are not support requests at all (intent ``off_topic``).
* ``long_prompt``: known intents buried in several sentences of context (several times the
  usual length, often beyond ``max_prompt_chars``).
* ``register``: known intents in another register: very formal letters or Spanglish chat.
* ``none``: ordinary in-distribution tickets, to dilute the shift.

The mix is configurable; counts per kind are exact (largest remainder) and the rows are
shuffled. Deterministic for a seed. Text is redacted like the stored corpus unless
``redact=False``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import timedelta

import pandas as pd

from loopline.data.corpus import (
    CORPUS_COLUMNS,
    CORPUS_PERIOD_DAYS,
    CORPUS_START,
    CUSTOMER_COLUMNS,
    INTENT_WEIGHTS,
    INTENTS,
    SPECS,
    IntentSpec,
    build_ticket,
)
from loopline.data.pii import redact_frame

DRIFT_KINDS: tuple[str, ...] = ("new_intent", "off_domain", "long_prompt", "register", "none")
DEFAULT_MIX: Mapping[str, float] = {
    "new_intent": 0.3,
    "off_domain": 0.2,
    "long_prompt": 0.25,
    "register": 0.25,
}
NEW_INTENTS: tuple[str, ...] = ("warranty_claim", "crypto_payout")
OFF_TOPIC = "off_topic"
REGISTERS: tuple[str, ...] = ("formal", "spanglish")
DRIFT_COLUMNS: tuple[str, ...] = (*CORPUS_COLUMNS, "drift_kind")

NEW_SPECS: Mapping[str, IntentSpec] = {
    "warranty_claim": IntentSpec(
        bodies=(
            "My {product} broke and it is still under warranty. How do I file a warranty "
            "claim for order {order}?",
            "I'd like to make a warranty claim: the {product} from order {order} stopped "
            "charging after a few months.",
            "Is the {product} (order {order}) covered by the warranty? It has a manufacturing "
            "defect.",
            "warranty claim for order {order} please, the {product} switched off for good",
        ),
        hints=("maybe it's covered by the warranty",),
        reply=(
            "I've opened a warranty claim for the {product} from order {order}. Our repair "
            "partner will email you within 2 business days with the next steps."
        ),
    ),
    "crypto_payout": IntentSpec(
        bodies=(
            "When will my crypto payout of {amount} in USDC arrive? It's pending since {date}.",
            "I want to withdraw my balance of {amount} to my Bitcoin wallet. How?",
            "My crypto payout of {amount} failed, the wallet address was rejected.",
            "can you send my {amount} rewards as ETH instead of store credit",
        ),
        hints=("or pay it out in crypto",),
        reply=(
            "Crypto payouts of {amount} are processed within 24 hours once your wallet address "
            "is verified. I've checked yours and the transfer is now queued."
        ),
    ),
    OFF_TOPIC: IntentSpec(
        bodies=(
            "Can you recommend a good pasta recipe for tonight?",
            "What's the weather going to be like in Lisbon tomorrow?",
            "Write me a short poem about autumn leaves.",
            "Who won the football match last night?",
            "Explain quantum computing in simple terms.",
            "Help me write a cover letter for a nursing job.",
            "What is the capital of Australia?",
            "Translate 'good morning' into Japanese.",
        ),
        hints=("by the way, what's the weather like",),
        reply=(
            "Sorry, I can only help with questions about your orders, account and billing. "
            "Is there anything like that I can help you with?"
        ),
    ),
}

# Context that makes a ticket long without changing what it asks for.
STORY_SENTENCES: tuple[str, ...] = (
    "I have been a loyal customer for more than six years and I have recommended you to all "
    "of my colleagues, which is why this situation is so disappointing.",
    "Last week I already spoke to one of your agents on the phone, who promised that someone "
    "would get back to me within a day, but nobody ever did.",
    "I also tried the help centre articles and followed every step exactly as described, "
    "including logging out, clearing my browser cache and restarting my computer twice.",
    "To give you some background, I run a small bakery and we use your service every single "
    "morning to manage our orders, so any interruption costs us real money.",
    "My partner had a similar problem a few months ago and it took three separate emails "
    "before it was resolved, so I am hoping this time will be quicker.",
    "I am writing from my phone while travelling, so please excuse any typos, and I will only "
    "be able to check my messages in the evenings.",
    "Please note that I have attached screenshots in a previous message, although I am not "
    "sure whether the attachments came through on your side.",
    "I would really appreciate a detailed answer rather than a standard template, because the "
    "last reply I received did not address my question at all.",
    "For what it's worth, the same thing happened on both my laptop and my tablet, and on two "
    "different internet connections, so I doubt it is something on my end.",
    "I have checked my bank statements, my spam folder and my account settings several times "
    "before contacting you, just to be sure I am not missing something obvious.",
)

FORMAL_OPENERS: tuple[str, ...] = ("Dear Sir or Madam,", "To whom it may concern,")
SPANGLISH_OPENERS: tuple[str, ...] = ("hola!", "oye,", "buenas,", "")

FORMAL_BODIES: Mapping[str, tuple[str, ...]] = {
    "billing_refund": (
        "I write to formally request reimbursement of {amount}, erroneously debited in respect "
        "of order {order}. I should be grateful for your prompt attention to this matter.",
    ),
    "password_reset": (
        "I regret to inform you that I am presently unable to access my account, as my "
        "password is no longer accepted. I would be obliged if you could assist me in "
        "resetting it.",
    ),
    "shipping_status": (
        "I should be most grateful if you would kindly advise me as to the present "
        "whereabouts of order {order}, which has not yet been received.",
    ),
    "cancel_subscription": (
        "Please accept this letter as formal notice of my wish to terminate my {plan} "
        "subscription with effect from the end of the current period.",
    ),
    "update_payment": (
        "My {brand} card having expired, I should be obliged if you would advise me how the "
        "payment details held on my account may be amended.",
    ),
    "bug_report": (
        "I wish to bring to your attention a persistent fault: upon opening {feature}, the "
        "application reports error {error}. I trust the matter will be investigated.",
    ),
    "account_delete": (
        "I hereby request the closure of my account and the erasure of all personal data held "
        "in relation to it, in accordance with applicable data protection law.",
    ),
    "upgrade_plan": (
        "I write to request that my subscription be transferred from the {plan} tier to the "
        "{new_plan} tier at your earliest convenience.",
    ),
    "return_item": (
        "I regret to report that the {product} supplied under order {order} is unsatisfactory, "
        "and I wish to return it in accordance with your returns policy.",
    ),
    "invoice_request": (
        "For the purposes of our company accounts, I should be grateful to receive a formal "
        "invoice in respect of order {order}.",
    ),
}

SPANGLISH_BODIES: Mapping[str, tuple[str, ...]] = {
    "billing_refund": (
        "me cobraron {amount} dos veces por la order {order}, quiero mi refund porfa",
        "necesito un refund de {amount} for order {order}, no autoricé ese cargo",
    ),
    "password_reset": (
        "no puedo hacer login, se me olvidó el password, ayuda",
        "el reset link del password no llega a mi email, qué hago?",
    ),
    "shipping_status": (
        "dónde está mi order {order}?? ya pasó el {date} y nada",
        "mi {product} de la order {order} todavía no llega, any update?",
    ),
    "cancel_subscription": (
        "quiero cancelar mi {plan} subscription ya, no la uso",
        "cómo cancelo el plan {plan}? no quiero que se renueve",
    ),
    "update_payment": (
        "mi tarjeta {brand} expiró, cómo cambio el payment method?",
        "necesito poner una nueva {brand} en mi cuenta porfa",
    ),
    "bug_report": (
        "la app se crashea en {feature} con error {error} en mi {device}",
        "me sale error {error} cada vez que abro {feature}, qué onda?",
    ),
    "account_delete": (
        "borren mi cuenta y todos mis datos porfa",
        "quiero hacer delete de mi account para siempre, ya no la uso",
    ),
    "upgrade_plan": (
        "quiero hacer upgrade de {plan} a {new_plan}, cómo le hago?",
        "cámbienme del plan {plan} al {new_plan} porfa",
    ),
    "return_item": (
        "quiero devolver el {product} de la order {order}, no me sirvió",
        "el {product} de la order {order} llegó roto, cómo lo regreso?",
    ),
    "invoice_request": (
        "me mandan la factura de la order {order}? la necesito para mi empresa",
        "necesito el invoice de la order {order} porfa",
    ),
}


def _register_specs(bodies: Mapping[str, tuple[str, ...]]) -> dict[str, IntentSpec]:
    return {
        intent: IntentSpec(bodies=bodies[intent], hints=spec.hints, reply=spec.reply)
        for intent, spec in SPECS.items()
    }


_REGISTER_SPECS: Mapping[str, Mapping[str, IntentSpec]] = {
    "formal": _register_specs(FORMAL_BODIES),
    "spanglish": _register_specs(SPANGLISH_BODIES),
}


def _normalise_mix(mix: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(mix) - set(DRIFT_KINDS))
    if unknown:
        raise ValueError(f"unknown drift kind(s) {unknown}; known: {list(DRIFT_KINDS)}")
    negative = sorted(k for k, v in mix.items() if v < 0)
    if negative:
        raise ValueError(f"drift mix weights must be >= 0, got negative for {negative}")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("drift mix weights must not all be zero")
    return {k: mix.get(k, 0.0) / total for k in DRIFT_KINDS}


def drift_counts(n: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Exact number of tickets per drift kind for ``n`` tickets (largest remainder)."""
    shares = _normalise_mix(mix)
    raw = {k: shares[k] * n for k in DRIFT_KINDS}
    counts = {k: int(v) for k, v in raw.items()}
    by_remainder = sorted(DRIFT_KINDS, key=lambda k: (-(raw[k] - counts[k]), DRIFT_KINDS.index(k)))
    for k in by_remainder[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def _known_intent(rng: random.Random) -> str:
    return rng.choices(INTENTS, weights=[INTENT_WEIGHTS[i] for i in INTENTS])[0]


def generate_drifted_traffic(
    n: int,
    seed: int,
    mix: Mapping[str, float] | None = None,
    *,
    redact: bool = True,
    max_prompt_chars: int = 600,
    max_reply_chars: int = 400,
    long_sentences: tuple[int, int] = (4, 8),
) -> pd.DataFrame:
    """``n`` tickets of shifted traffic (``DRIFT_COLUMNS``), deterministic for ``seed``.

    ``mix`` maps drift kinds to relative weights (default ``DEFAULT_MIX``).
    ``max_prompt_chars`` bounds every kind except ``long_prompt``, whose tickets get
    ``long_sentences`` (min, max) sentences of context and are deliberately unbounded.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    lo, hi = long_sentences
    if not 1 <= lo <= hi:
        raise ValueError(f"long_sentences must satisfy 1 <= min <= max, got {long_sentences}")
    counts = drift_counts(n, mix if mix is not None else DEFAULT_MIX)
    rng = random.Random(f"loopline-drift:{seed}")
    kinds = [k for k in DRIFT_KINDS for _ in range(counts[k])]
    rng.shuffle(kinds)
    all_specs = {**SPECS, **NEW_SPECS}

    rows: list[dict[str, object]] = []
    for i, kind in enumerate(kinds):
        limit: int | None = max_prompt_chars
        openers: Sequence[str] | None = None
        channel: str | None = None
        story: Sequence[str] = ()
        specs: Mapping[str, IntentSpec] = all_specs
        if kind == "new_intent":
            intent = rng.choice(NEW_INTENTS)
        elif kind == "off_domain":
            intent = OFF_TOPIC
        elif kind == "long_prompt":
            intent = _known_intent(rng)
            story = rng.sample(STORY_SENTENCES, rng.randint(lo, min(hi, len(STORY_SENTENCES))))
            limit = None
        elif kind == "register":
            intent = _known_intent(rng)
            register = rng.choice(REGISTERS)
            specs = _REGISTER_SPECS[register]
            openers = FORMAL_OPENERS if register == "formal" else SPANGLISH_OPENERS
            channel = "email" if register == "formal" else "chat"  # letters vs. chat slang
        else:
            intent = _known_intent(rng)
        t = build_ticket(
            rng,
            intent,
            channel=channel,
            specs=specs,
            openers=openers,
            story=story,
            max_prompt_chars=limit,
            max_reply_chars=max_reply_chars,
        )
        created = CORPUS_START + timedelta(
            days=CORPUS_PERIOD_DAYS, seconds=rng.randrange(30 * 86_400)
        )
        rows.append(
            {
                "ticket_id": f"DRF-{i + 1:06d}",
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "channel": t.channel,
                "customer_name": t.customer.name,
                "customer_email": t.customer.email,
                "customer_phone": t.customer.phone,
                "prompt": t.prompt,
                "intent": intent,
                "reply": t.reply,
                "true_intent": intent,
                "secondary_intent": None,
                "is_ambiguous": False,
                "is_noisy": False,
                "duplicate_of": None,
                "drift_kind": kind,
            }
        )
    frame = pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))
    if redact:
        frame, _ = redact_frame(frame, ("prompt", "reply", *CUSTOMER_COLUMNS))
    return frame
