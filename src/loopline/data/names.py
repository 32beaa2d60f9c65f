"""Person names used by the synthetic corpus and recognised by the PII redactor.

The lists deliberately avoid names that are also ordinary English words (Will, May, Price,
Rose, ...) so that matching them case-insensitively does not redact ordinary text.
"""

from __future__ import annotations

FIRST_NAMES: tuple[str, ...] = (
    "Aisha", "Amara", "Anders", "Aryan", "Beatriz", "Camila", "Chiara", "Dmitri",
    "Elena", "Emeka", "Farah", "Freya", "Giulia", "Hamid", "Hiroshi", "Ingrid",
    "Isabella", "Jasper", "Kenji", "Leila", "Lucas", "Magnus", "Mateo", "Mei",
    "Nadia", "Niamh", "Oluwaseun", "Omar", "Priya", "Rafael", "Ravi", "Saoirse",
    "Sofia", "Tariq", "Thiago", "Valentina", "Wojciech", "Yara", "Yusuf", "Zofia",
)  # fmt: skip

LAST_NAMES: tuple[str, ...] = (
    "Abernathy", "Adeyemi", "Bianchi", "Castellanos", "Dubois", "Eriksen", "Fernandes",
    "Gallagher", "Haddad", "Ivanova", "Johansson", "Kowalski", "Lindqvist", "Mensah",
    "Moreau", "Nakamura", "Novak", "Okafor", "Petrov", "Quintero", "Rossi", "Schneider",
    "Tanaka", "Urquhart", "Vasquez", "Wieczorek", "Yamamoto", "Zielinski",
)  # fmt: skip

ALL_NAMES: tuple[str, ...] = FIRST_NAMES + LAST_NAMES
