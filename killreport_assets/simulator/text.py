"""Names, tickers and descriptions shaped like Tranquility's, awkward cases included.

Real names carry unicode, quotes, apostrophes, `<`/`&` and odd spacing, and descriptions are often
kilobytes of EVE's HTML-ish markup; a scraper that survives the simulator should survive ESI.
Everything here draws from the `random.Random` it is given, so output is fixed by the seed.
"""

from __future__ import annotations

import random

_ADJECTIVES = (
    "Black", "Red", "Silent", "Iron", "Golden", "Rogue", "Dark", "Frozen", "Hidden", "Lost", "Burning",
    "Eternal", "Savage", "Brave", "Hollow", "Crimson", "Azure", "Obsidian", "Solar", "Void", "Wandering",
    "Reckless", "Sovereign", "Infinite", "Quiet", "Northern", "Outer", "Deep", "Free", "Last", "Shattered",
    "Stellar", "Arctic", "Phantom", "Violent", "Lucky", "Ancient", "Rusty", "Neon", "Grim",
)  # fmt: skip
_NOUNS = (
    "Legion", "Wolves", "Miners", "Syndicate", "Reapers", "Vanguard", "Cartel", "Horizon", "Dynasty",
    "Industries", "Fleet", "Raiders", "Collective", "Order", "Outlaws", "Pilots", "Watch", "Covenant",
    "Armada", "Tribe", "Brotherhood", "Expedition", "Dominion", "Knights", "Consortium", "Salvagers",
    "Engineering", "Logistics", "Hunters", "Corsairs", "Nomads", "Ventures", "Heralds", "Drifters",
)  # fmt: skip
_CORP_SUFFIXES = ("", "", "", " Inc.", " Corp", " Holdings", " Ltd", " Enterprises", " & Co", " [NPSI]")
_ALLIANCE_SUFFIXES = ("", " Alliance", " Federation", " Coalition", " Empire", " Union", " Bloc", ".")
# Names seen in the wild (or in ESI's own examples) that trip up naive code.
SPECIAL_CORPORATION_NAMES = (
    "Zombies are People Too",
    'Ünïcödé \'"Corp"',
    "C C P",
    "Tom & Jerry's <Fun> Club",
    "  Leading and trailing  ",
    "Ωmega Δelta Σyndicate",
    "日本語コーポレーション",
    "Corp'; DROP TABLE corporations;--",
    'Ni\'Cole & "The" Crew',
    "ISK Redistribution Services",
)
SPECIAL_ALLIANCE_NAMES = (
    ("C C P Alliance", "<C C P>"),
    ("Brave & Bold", "B&B"),
    ("L'Alliance Française", "L'AF"),
    ("Ünïcödé Allïance", "ÜNÏ"),
    ("<script>alert(1)</script> Alliance", "<S>"),
    ('Quote "Unquote" Holding', '"Q"'),
)
_TICKER_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TICKER_ODD = ("-", ".", " ", "_", "<", ">", "&", "'")

_FIRST = (
    "Ava", "Boris", "Chen", "Dagny", "Eirik", "Fara", "Gunnar", "Hiroshi", "Ines", "Jax", "Kaelen", "Lyra",
    "Mikko", "Nadia", "Oskar", "Priya", "Quentin", "Rhea", "Soren", "Talia", "Ulrich", "Vesna", "Wen",
    "Xander", "Yuki", "Zoë", "Ægir", "Björn", "Siân", "D'Arcy",
)  # fmt: skip
_LAST = (
    "Arkanon", "Baldur", "Corvin", "Dresden", "Erebus", "Falk", "Grimm", "Harkonen", "Isakson", "Jovian",
    "Kador", "Lucien", "Mordu", "Nefantar", "Ortega", "Pator", "Quafe", "Rens", "Sobaseki", "Tash-Murkon",
    "Umbra", "Vherokior", "Wyrm", "Xeno", "Yulai", "Zainou", "O'Neil", "Müller",
)  # fmt: skip


def corporation_name(rng: random.Random) -> str:
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}{rng.choice(_CORP_SUFFIXES)}"


def alliance_name(rng: random.Random) -> str:
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}{rng.choice(_ALLIANCE_SUFFIXES)}"


def character_name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def ticker(rng: random.Random, *, max_len: int = 5) -> str:
    """Mostly upper-case letters and digits; sometimes the punctuation EVE allows."""
    chars = rng.choices(_TICKER_CHARS, k=rng.randint(2, max_len))
    if rng.random() < 0.08:
        chars[rng.randrange(len(chars))] = rng.choice(_TICKER_ODD)
    return "".join(chars)


def unique(make: str, taken: set[str], rng: random.Random) -> str:
    """Return `make`, or a numbered variant of it, that is not in `taken`; records the result."""
    name = make
    while name in taken:
        name = f"{make} {rng.randint(2, 9999)}"
    taken.add(name)
    return name


_SENTENCES = (
    "We are a friendly corporation focused on mining, industry and PvP.",
    "Recruiting pilots of all ages & skill levels — join our public channel.",
    "No war-decs, no drama. Just spaceships.",
    'Our CEO\'s door is always open; "ask and you shall receive".',
    "Nullsec is <b>home</b>. Highsec is for visiting.",
    "Tax is 10% until the next expansion; ISK goes to the SRP fund.",
    "Fly safe o7",
    "Заходите в наш канал — we speak English, Deutsch и русский.",
)


def description(rng: random.Random) -> str | None:
    """None (absent), empty, a line of text, or several KB of EVE markup, in realistic proportions."""
    roll = rng.random()
    if roll < 0.25:
        return None
    if roll < 0.45:
        return ""
    if roll < 0.85:
        return " ".join(rng.sample(_SENTENCES, rng.randint(1, 3)))
    return _rich_description(rng)


def _rich_description(rng: random.Random) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(12, 45)):
        color = f"#{rng.randrange(0x1000000):06x}"
        kind = rng.random()
        if kind < 0.5:
            parts.append(
                f'<font size="{rng.choice((10, 12, 14, 18))}" color="#bf{color[1:]}">'
                f"{rng.choice(_SENTENCES)}</font>"
            )
        elif kind < 0.75:
            parts.append(
                f'<a href="showinfo:2//{rng.randint(98_000_000, 98_999_999)}">'
                f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}</a>"
            )
        elif kind < 0.9:
            parts.append(f"<loc><url=https://example.org/{rng.randint(1, 999)}>recruitment</url></loc>")
        else:
            parts.append("<b>&lt;&lt; READ THE RULES &gt;&gt;</b>")
        parts.append("<br>")
    return "".join(parts)


def url(rng: random.Random, name: str) -> str | None:
    roll = rng.random()
    if roll < 0.4:
        return None
    if roll < 0.5:
        return ""
    if roll < 0.55:
        return "http://"
    slug = "".join(c for c in name.lower() if c.isascii() and c.isalnum())[:20] or "corp"
    return f"https://{slug}.example.org/"
