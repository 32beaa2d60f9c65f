"""Seeded synthetic support-ticket corpus.

Every ticket is built from composable parts: an opener that depends on the channel, an intent
body with slots (order number, product, plan, amount, ...), optional sentences that carry
personal data (a name, an email address, a phone or card number), a closer and a signature.
Some tickets get typos, chat messages are sometimes all lower case.

On top of that, exactly ``round(n * ambiguous_rate)`` tickets mix in a sentence from a
second intent's vocabulary, exactly ``round(n * label_noise)`` tickets carry a wrong label
(``true_intent`` keeps the right one), and a small share are re-sent copies of an earlier
ticket (differing only in case, spacing and punctuation, so they normalise to the same text).

The reference reply depends only on the intent and on details visible in the message (order
number, plan, product, whether the customer gave a name or a card number), so a model can
learn to produce it. Output is fully determined by ``DataConfig.seed``: the generator uses a
private ``random.Random`` and never iterates over sets or relies on ``hash()``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas loads when tickets are generated, not when INTENTS are read
    import pandas as pd

from loopline.config import DataConfig
from loopline.data.names import FIRST_NAMES, LAST_NAMES
from loopline.data.pii import luhn_valid

INTENTS: tuple[str, ...] = (
    "billing_refund",
    "password_reset",
    "shipping_status",
    "cancel_subscription",
    "update_payment",
    "bug_report",
    "account_delete",
    "upgrade_plan",
    "return_item",
    "invoice_request",
)

CHANNELS: tuple[str, ...] = ("email", "chat", "web_form")

# Columns of the generated (and, after redaction, the raw stored) corpus, in order.
CORPUS_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "created_at",
    "channel",
    "customer_name",
    "customer_email",
    "customer_phone",
    "prompt",
    "intent",
    "reply",
    "true_intent",
    "secondary_intent",
    "is_ambiguous",
    "is_noisy",
    "duplicate_of",
)
CUSTOMER_COLUMNS: tuple[str, ...] = ("customer_name", "customer_email", "customer_phone")

# Share of tickets that are re-sent copies of an earlier one (exercises leak-free splitting).
DUPLICATE_RATE = 0.02
# Probabilities of the optional parts of a ticket.
P_TYPO = 0.15
P_LOWERCASE_CHAT = 0.4
P_NAME_INTRO = 0.18
P_SIGNATURE = {"email": 0.55, "chat": 0.05, "web_form": 0.2}
P_CONTACT = 0.25
P_CARD = {"billing_refund": 0.35, "update_payment": 0.4}
P_CARD_OTHER = 0.03

CORPUS_START = datetime(2024, 1, 1, tzinfo=UTC)
CORPUS_PERIOD_DAYS = 180


@dataclass(frozen=True)
class IntentSpec:
    """How customers phrase one intent and how an agent answers it."""

    bodies: tuple[str, ...]
    hints: tuple[str, ...]  # short phrases used to make other intents' tickets ambiguous
    reply: str


# Slots: {order} {product} {plan} {new_plan} {amount} {date} {device} {feature} {error} {brand}.
# Every body of an intent contains the slots its reply uses, so the reply is predictable.
SPECS: Mapping[str, IntentSpec] = {
    "billing_refund": IntentSpec(
        bodies=(
            "I was charged {amount} twice for order {order}. Can I get a refund?",
            "Please refund the {amount} you took for order {order}, the item never shipped.",
            "I want my money back for order {order}. The charge of {amount} was a mistake.",
            "Requesting a refund of {amount} on order {order}, I was billed after cancelling.",
            "order {order} got charged {amount} but i already sent it back. refund please",
            "Can you reverse the {amount} charge on order {order}? I did not authorise it.",
            "You billed me {amount} on {date} for order {order} and I want that refunded.",
        ),
        hints=("and honestly I want my money back", "also I think I was charged twice"),
        reply=(
            "I'm sorry about that charge. I've requested a refund of {amount} for order "
            "{order}; it should reach your account within 5-7 business days."
        ),
    ),
    "password_reset": IntentSpec(
        bodies=(
            "I can't log in, I forgot my password.",
            "The password reset email never arrives. How do I reset my password?",
            "locked out of my account after too many attempts, need to reset my password",
            "My password stopped working on my {device}. Please help me reset it.",
            "How do I change my password? The reset link says it has expired.",
            "cant sign in, the reset password link doesnt work",
            "I need a new password, the old one is not accepted on my {device}.",
        ),
        hints=("also I can't log in any more", "plus my password doesn't work"),
        reply=(
            "I've sent a new password reset link to the email address on your account. It is "
            "valid for 30 minutes; please check your spam folder if you don't see it."
        ),
    ),
    "shipping_status": IntentSpec(
        bodies=(
            "Where is my order {order}? It was supposed to arrive by {date}.",
            "My {product} (order {order}) still hasn't shipped. Any update?",
            "tracking for order {order} hasn't changed in a week",
            "Can you tell me when order {order} will be delivered?",
            "I ordered a {product} on {date}, order {order}, and nothing has arrived yet.",
            "what's the status of order {order}?",
            "Order {order} says shipped but the parcel is not here. Where is it?",
        ),
        hints=("and where is my package anyway", "also the tracking hasn't updated"),
        reply=(
            "Order {order} is on its way and should arrive within 3-5 business days. You'll "
            "get an email with the tracking link as soon as it moves."
        ),
    ),
    "cancel_subscription": IntentSpec(
        bodies=(
            "Please cancel my {plan} subscription.",
            "I want to cancel my {plan} plan before the next renewal.",
            "how do i stop my {plan} subscription from renewing",
            "Cancel my membership please, I no longer use the {plan} plan.",
            "I'd like to end my {plan} subscription at the end of this month.",
            "Stop charging me for {plan}, I want to cancel the subscription.",
        ),
        hints=("maybe I should just cancel my subscription", "or I'll cancel my plan"),
        reply=(
            "I've cancelled your {plan} subscription. You keep access until the end of the "
            "current billing period and won't be charged again."
        ),
    ),
    "update_payment": IntentSpec(
        bodies=(
            "I need to update the card on file, my old {brand} expired.",
            "How do I change my payment method to a new {brand}?",
            "my {brand} card was replaced, please update my billing details",
            "The payment failed because my {brand} expired. Where can I add a new card?",
            "I'd like to switch the payment method on my account to my {brand} card.",
            "Please replace the card on my account with a new {brand}.",
        ),
        hints=("also my card on file expired", "and I need to change my payment method"),
        reply=(
            "You can update your payment method under Settings > Billing > Payment methods. "
            "Once the new card is saved we'll retry any failed payment automatically."
        ),
    ),
    "bug_report": IntentSpec(
        bodies=(
            "The {feature} page crashes with error {error} on my {device}.",
            "I keep getting error {error} when I open {feature}.",
            "{feature} is broken since the last update, it shows error {error}",
            "Bug: clicking {feature} on my {device} gives error {error} and a blank screen.",
            "the app freezes on {feature} and then says error {error}",
            "Every time I use {feature} I get error {error}. Is this a known issue?",
        ),
        hints=("also the app keeps crashing", "and the page shows an error"),
        reply=(
            "Thanks for reporting error {error} in {feature}. I've passed the details to our "
            "engineers; clearing the app cache usually helps until the fix ships."
        ),
    ),
    "account_delete": IntentSpec(
        bodies=(
            "Please delete my account and all my data.",
            "I want to permanently close my account.",
            "how do i delete my account? i don't want you to keep my data",
            "Remove my account and erase my personal information under GDPR.",
            "Close my account, I'm not using it any more.",
            "I'd like my account and everything in it deleted for good.",
        ),
        hints=("or just delete my account", "honestly thinking about closing my account"),
        reply=(
            "I've started the deletion of your account. All personal data will be erased "
            "within 30 days, and you'll get a confirmation email when it's done."
        ),
    ),
    "upgrade_plan": IntentSpec(
        bodies=(
            "I'd like to upgrade from {plan} to {new_plan}.",
            "How do I move my account from the {plan} plan to {new_plan}?",
            "we need more seats, can we switch from {plan} to {new_plan}",
            "Upgrade me to {new_plan} please, {plan} is too limited.",
            "What does it cost to go from {plan} to {new_plan}? I want to upgrade.",
            "Please change my plan from {plan} to {new_plan} today.",
        ),
        hints=("or should I upgrade my plan", "thinking about a bigger plan too"),
        reply=(
            "Your plan is now {new_plan}. The price difference from {plan} is prorated on "
            "your next invoice, and the new features are available right away."
        ),
    ),
    "return_item": IntentSpec(
        bodies=(
            "I want to return the {product} from order {order}, it doesn't fit my needs.",
            "How do I send back my {product}? Order {order}.",
            "The {product} in order {order} arrived damaged. I'd like to return it.",
            "can i return order {order}? the {product} is not what i expected",
            "I'd like a return label for the {product} I bought, order {order}.",
            "Order {order}: the {product} stopped working after two days, I want to return it.",
        ),
        hints=("or can I send it back", "maybe I'll return it instead"),
        reply=(
            "You can return the {product} from order {order} within 30 days. I've emailed you "
            "a prepaid return label; drop the parcel at any post office."
        ),
    ),
    "invoice_request": IntentSpec(
        bodies=(
            "Can you send me an invoice for order {order}?",
            "I need a VAT invoice for order {order} for my company.",
            "please email me the receipt for order {order}",
            "Where can I download the invoice for order {order}?",
            "Our accounting team needs a copy of the invoice for order {order}.",
            "I lost the receipt for order {order} from {date}, can you resend it?",
        ),
        hints=("and I need an invoice too", "please also send the receipt"),
        reply=(
            "I've emailed the invoice for order {order} to the address on your account. You "
            "can also download it any time from Account > Orders."
        ),
    ),
}

# Relative frequency of each intent (support traffic is never uniform).
INTENT_WEIGHTS: Mapping[str, float] = {
    "billing_refund": 1.3,
    "password_reset": 1.4,
    "shipping_status": 1.5,
    "cancel_subscription": 1.0,
    "update_payment": 0.8,
    "bug_report": 1.0,
    "account_delete": 0.6,
    "upgrade_plan": 0.7,
    "return_item": 0.9,
    "invoice_request": 0.8,
}

PRODUCTS = (
    "Nimbus headphones", "AeroBlend blender", "Trailhead backpack", "Lumen desk lamp",
    "Quill e-reader", "Orbit smartwatch", "Cascade water bottle", "Ember space heater",
)  # fmt: skip
PLANS = ("Basic", "Plus", "Pro", "Team", "Business")
DEVICES = ("iPhone", "Android phone", "iPad", "Windows laptop", "MacBook", "Chromebook")
FEATURES = ("dashboard", "export", "reports", "search", "checkout", "calendar sync")
BRANDS = ("Visa", "Mastercard", "Amex")
EMAIL_DOMAINS = ("example.com", "mail.example.org", "inbox.example.net", "example.co.uk")
MONTHS = ("January", "February", "March", "April", "May", "June", "July")

OPENERS: Mapping[str, tuple[str, ...]] = {
    "email": ("Hi,", "Hello,", "Hello support team,", "Dear Loopline support,", "Good morning,"),
    "chat": ("", "", "hi,", "hey", "hello!"),
    "web_form": ("", "", "Hello,", "Hi there,"),
}
CLOSERS: tuple[str, ...] = (
    "", "", "Thanks!", "Thank you.", "Thanks in advance.", "Please help.", "Appreciate it.",
)  # fmt: skip
SIGNATURES: tuple[str, ...] = (
    "\n-- {first} {last}",
    " Thanks, {first}",
    "\nRegards,\n{first} {last}",
)
NAME_INTROS: tuple[str, ...] = (
    "My name is {first} {last}.",
    "I'm {first} {last}.",
    "{first} {last} here.",
)
CONTACT_LINES: tuple[str, ...] = (
    "You can reach me at {email}.",
    "My email is {email}.",
    "Call me on {phone} if needed.",
    "My number is {phone}.",
    "Reply to {email} or call {phone}.",
)
CARD_LINES: tuple[str, ...] = (
    "The card used was {card}.",
    "Card number {card}.",
    "my card is {card}",
)

REPLY_CARD_NOTE = "For your security, please never send full card numbers to us."


@dataclass
class TicketParts:
    """A ticket under construction; ``render`` joins the parts that are kept."""

    opener: str = ""
    intro: str = ""
    body: str = ""
    extra: str = ""  # the ambiguous second-intent sentence
    story: str = ""  # extra context (the drift generator's over-long prompts)
    contact: str = ""
    card: str = ""
    closer: str = ""
    signature: str = ""
    lowercase: bool = False
    typo_positions: list[int] = field(default_factory=list)

    def render(self) -> str:
        head = " ".join(p for p in (self.opener, self.intro) if p)
        sentences = [p for p in (self.body, self.extra, self.story, self.contact, self.card) if p]
        middle = " ".join(_end_sentence(p) for p in sentences)
        text = " ".join(p for p in (head, middle, self.closer) if p) + self.signature
        return text.lower() if self.lowercase else text

    def drop_optional(self) -> bool:
        """Remove one optional part (least important first); False if none is left."""
        for name in ("story", "signature", "closer", "card", "contact", "intro", "opener", "extra"):
            if getattr(self, name):
                setattr(self, name, "")
                return True
        return False


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    """A random card number of ``length`` digits starting with ``prefix`` that passes Luhn."""
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def fake_card(rng: random.Random) -> str:
    """A Luhn-valid card number in one of the common written formats."""
    kind = rng.randrange(3)
    if kind == 0:  # Amex, 15 digits, 4-6-5
        n = luhn_complete(rng.choice(("34", "37")), 15, rng)
        return n if rng.random() < 0.3 else f"{n[:4]} {n[4:10]} {n[10:]}"
    n = luhn_complete("4" if kind == 1 else rng.choice(("51", "52", "53", "54", "55")), 16, rng)
    style = rng.randrange(3)
    if style == 0:
        return n
    sep = " " if style == 1 else "-"
    return sep.join(n[i : i + 4] for i in range(0, 16, 4))


def fake_phone(rng: random.Random) -> str:
    """A phone number in one of several national and international formats."""
    area, mid, last = rng.randrange(201, 990), rng.randrange(200, 999), rng.randrange(10_000)
    style = rng.randrange(7)
    if style == 0:
        return f"({area}) {mid}-{last:04d}"
    if style == 1:
        return f"{area}-{mid}-{last:04d}"
    if style == 2:
        return f"{area}.{mid}.{last:04d}"
    if style == 3:
        return f"+1 {area} {mid} {last:04d}"
    if style == 4:
        return f"+1{area}{mid}{last:04d}"
    if style == 5:
        return f"+44 20 {rng.randrange(7000, 8999)} {last:04d}"
    return f"+49 30 {rng.randrange(1_000_000, 99_999_999)}"


def fake_email(first: str, last: str, rng: random.Random) -> str:
    local = rng.choice((f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randrange(100)}"))
    return f"{local.lower()}@{rng.choice(EMAIL_DOMAINS)}"


def _slots(rng: random.Random) -> dict[str, str]:
    plan_i = rng.randrange(len(PLANS) - 1)
    day = rng.randrange(1, 28)
    month = rng.randrange(len(MONTHS))
    date = rng.choice(
        (f"{MONTHS[month]} {day}", f"2024-{month + 1:02d}-{day:02d}", f"{month + 1}/{day}")
    )
    currency = rng.choice(("$", "$", "€", "£"))
    return {
        "order": f"#{rng.randrange(1_000_000, 9_999_999)}",
        "product": rng.choice(PRODUCTS),
        "plan": PLANS[plan_i],
        "new_plan": PLANS[rng.randrange(plan_i + 1, len(PLANS))],
        "amount": f"{currency}{rng.randrange(5, 300)}.{rng.choice(('00', '49', '99'))}",
        "date": date,
        "device": rng.choice(DEVICES),
        "feature": rng.choice(FEATURES),
        "error": f"E-{rng.randrange(100, 999)}",
        "brand": rng.choice(BRANDS),
    }


_TYPO_WORD = re.compile(r"\b[a-z]{4,}\b")


def add_typos(text: str, rng: random.Random, count: int) -> str:
    """Swap, drop or double a letter in ``count`` lower-case words of ``text``.

    Only plain lower-case words are touched, so names, products, numbers and addresses keep
    their spelling.
    """
    for _ in range(count):
        words = list(_TYPO_WORD.finditer(text))
        if not words:
            break
        m = rng.choice(words)
        w = m.group()
        i = rng.randrange(1, len(w) - 1)
        op = rng.randrange(3)
        if op == 0:
            w = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
        elif op == 1:
            w = w[:i] + w[i + 1 :]
        else:
            w = w[:i] + w[i] + w[i:]
        text = text[: m.start()] + w + text[m.end() :]
    return text


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


def _end_sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


@dataclass(frozen=True)
class Customer:
    first: str
    last: str
    email: str
    phone: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


def fake_customer(rng: random.Random) -> Customer:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return Customer(first, last, fake_email(first, last, rng), fake_phone(rng))


@dataclass(frozen=True)
class Ticket:
    """One generated ticket before it becomes a DataFrame row."""

    prompt: str
    reply: str
    intent: str
    channel: str
    customer: Customer
    secondary_intent: str | None = None


def build_ticket(
    rng: random.Random,
    intent: str,
    *,
    channel: str | None = None,
    secondary: str | None = None,
    max_prompt_chars: int | None = 600,
    max_reply_chars: int | None = 400,
    specs: Mapping[str, IntentSpec] = SPECS,
    openers: Sequence[str] | None = None,
    story: Sequence[str] = (),
) -> Ticket:
    """Compose one ticket for ``intent`` (optionally mixing in ``secondary``'s vocabulary).

    ``specs`` and ``openers`` replace the default phrasings, ``story`` adds context sentences
    after the body, and ``None`` limits leave the text unbounded: the drift generator uses
    these for new intents, another register and over-long prompts.
    """
    spec = specs[intent]
    channel = channel or rng.choices(CHANNELS, weights=(0.45, 0.35, 0.2))[0]
    customer = fake_customer(rng)
    slots = _slots(rng)
    names = {"first": customer.first, "last": customer.last}

    parts = TicketParts()
    parts.opener = rng.choice(openers if openers is not None else OPENERS[channel])
    parts.body = _capitalise(rng.choice(spec.bodies).format(**slots))
    if rng.random() < P_TYPO:
        parts.body = add_typos(parts.body, rng, rng.choice((1, 1, 2)))
    if secondary is not None:
        hint = rng.choice(specs[secondary].hints)
        parts.extra = _capitalise(hint) + rng.choice((".", "?", "!"))
    parts.story = " ".join(story)
    if rng.random() < P_NAME_INTRO:
        parts.intro = rng.choice(NAME_INTROS).format(**names)
    if rng.random() < P_CONTACT:
        parts.contact = rng.choice(CONTACT_LINES).format(email=customer.email, phone=customer.phone)
    if rng.random() < P_CARD.get(intent, P_CARD_OTHER):
        parts.card = _capitalise(rng.choice(CARD_LINES).format(card=fake_card(rng)))
    parts.closer = rng.choice(CLOSERS)
    if rng.random() < P_SIGNATURE[channel]:
        parts.signature = rng.choice(SIGNATURES).format(**names)
        if "Thanks" in parts.signature:  # no "Thanks! Thanks, Jane"
            parts.closer = ""
    parts.lowercase = channel == "chat" and rng.random() < P_LOWERCASE_CHAT

    prompt = parts.render()
    while max_prompt_chars is not None and len(prompt) > max_prompt_chars:
        if not parts.drop_optional():
            prompt = _truncate(prompt, max_prompt_chars)
            break
        prompt = parts.render()

    reply = spec.reply.format(**slots)
    if parts.intro or parts.signature:
        first_word = reply if reply.startswith(("I ", "I'")) else reply[0].lower() + reply[1:]
        reply = f"Hi {customer.first}, {first_word}"
    if parts.card:
        reply = f"{reply} {REPLY_CARD_NOTE}"
    if max_reply_chars is not None:
        reply = _truncate(reply, max_reply_chars)
    return Ticket(prompt, reply, intent, channel, customer, secondary)


def _resend(prompt: str, rng: random.Random, limit: int) -> str:
    """A re-sent copy of ``prompt``: same words, different case, spacing or punctuation."""
    variant = rng.randrange(4)
    if variant == 2:
        spaced = "  ".join(prompt.split(" ")) + " "
        if len(spaced) <= limit:
            return spaced
    if variant == 3:
        shouted = prompt.rstrip(".!?") + "??"
        if len(shouted) <= limit:
            return shouted
    return prompt.upper() if variant % 2 == 0 else prompt.lower()


def _exact_sample(rng: random.Random, population: Sequence[int], rate: float) -> list[int]:
    k = min(len(population), round(len(population) * rate))
    return sorted(rng.sample(list(population), k))


def generate_tickets(cfg: DataConfig) -> pd.DataFrame:
    """Generate ``cfg.n_tickets`` tickets (columns ``CORPUS_COLUMNS``), unredacted.

    Deterministic for a given configuration. Contains real-looking personal data in the
    ``customer_*`` columns and sometimes in the message: redact before storing.
    """
    rng = random.Random(f"loopline-corpus:{cfg.seed}")
    n = cfg.n_tickets
    intents = rng.choices(INTENTS, weights=[INTENT_WEIGHTS[i] for i in INTENTS], k=n)

    duplicates = set(_exact_sample(rng, range(1, n), DUPLICATE_RATE))
    originals = [i for i in range(n) if i not in duplicates]
    ambiguous = set(_exact_sample(rng, originals, cfg.ambiguous_rate))
    noisy = set(_exact_sample(rng, range(n), cfg.label_noise))

    rows: list[dict[str, object]] = []
    for i in range(n):
        created = CORPUS_START + timedelta(seconds=rng.randrange(CORPUS_PERIOD_DAYS * 86_400))
        if i in duplicates:
            j = rng.randrange(i)
            while j in duplicates:  # point at a first submission (ticket 0 never is a copy)
                j = rng.randrange(i)
            source = rows[j]
            row = dict(source)
            row["prompt"] = _resend(str(source["prompt"]), rng, cfg.max_prompt_chars)
            row["duplicate_of"] = source["ticket_id"]
            row["is_noisy"] = False
            row["intent"] = source["true_intent"]
        else:
            intent = intents[i]
            secondary = None
            if i in ambiguous:
                secondary = rng.choice([x for x in INTENTS if x != intent])
            t = build_ticket(
                rng,
                intent,
                secondary=secondary,
                max_prompt_chars=cfg.max_prompt_chars,
                max_reply_chars=cfg.max_reply_chars,
            )
            row = {
                "channel": t.channel,
                "customer_name": t.customer.name,
                "customer_email": t.customer.email,
                "customer_phone": t.customer.phone,
                "prompt": t.prompt,
                "intent": intent,
                "reply": t.reply,
                "true_intent": intent,
                "secondary_intent": secondary,
                "is_ambiguous": secondary is not None,
                "is_noisy": False,
                "duplicate_of": None,
            }
        row["ticket_id"] = f"TKT-{i + 1:06d}"
        row["created_at"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
        if i in noisy:
            row["intent"] = rng.choice([x for x in INTENTS if x != row["true_intent"]])
            row["is_noisy"] = True
        rows.append(row)
    import pandas as pd

    return pd.DataFrame(rows, columns=list(CORPUS_COLUMNS))
