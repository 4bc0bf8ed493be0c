"""The simulated EVE universe: alliances, corporations, memberships, histories, and their nightly drift.

Why: the scraper must meet data shaped like Tranquility's (heavy-tailed alliance sizes, awkward names,
optional fields, NPC corporations, old-range IDs) and the changes a real night brings (moves, leaves,
disbands, closed and new alliances, renames), reproducibly. Everything is derived from `random.Random`
instances seeded with strings, so results never depend on hash randomisation or global state.

A `Universe` is immutable: `advance()` returns the next day's universe and records what changed in
`drift_log`; `diff()` recomputes the changes between any two universes from their records.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from killreport_assets.simulator import text

SIM_EPOCH = datetime(2026, 8, 1, tzinfo=UTC)  # the state of day 0; day n is SIM_EPOCH + n days
EVE_LAUNCH = datetime(2003, 5, 6, tzinfo=UTC)
ID_RANGE_SWITCH = datetime(2010, 11, 3, tzinfo=UTC)  # entities created later get the 98M/99M ranges
BIGGEST_ALLIANCE_SHARE = 780 / 3616  # Goonswarm's 780 corporations against 3,616 listed alliances

# ID ranges from esi-docs `docs/guides/id-ranges.md`; old entities share one range with characters.
NPC_CORPORATION_IDS = (1_000_000, 1_999_999)
PLAYER_CORPORATION_IDS = (98_000_000, 98_999_999)
ALLIANCE_IDS = (99_000_000, 99_999_999)
CHARACTER_IDS = (90_000_000, 97_999_999)
OLD_IDS = (100_000_000, 2_099_999_999)
FACTION_IDS = (500001, 500002, 500003, 500004)
STATION_IDS = (60000004, 60003760, 60004588, 60008494, 60011866, 60014689, 60015069, 60015187)

# Drift kinds, as recorded in `Universe.drift_log` and returned by `diff()`.
CORPORATION_MOVED = "corporation_moved"  # alliance -> another alliance
CORPORATION_LEFT = "corporation_left"  # alliance -> none
CORPORATION_JOINED = "corporation_joined"  # none -> alliance
CORPORATION_DISBANDED = "corporation_disbanded"  # 404 from now on
CORPORATION_CREATED = "corporation_created"
CORPORATION_RENAMED = "corporation_renamed"  # name and/or ticker
CORPORATION_CEO_CHANGED = "corporation_ceo_changed"
CORPORATION_TAX_CHANGED = "corporation_tax_changed"
MEMBER_COUNT_CHANGED = "member_count_changed"
ALLIANCE_CLOSED = "alliance_closed"
ALLIANCE_CREATED = "alliance_created"
ALLIANCE_RENAMED = "alliance_renamed"
ALLIANCE_EXECUTOR_CHANGED = "alliance_executor_changed"
DRIFT_KINDS = (
    CORPORATION_MOVED, CORPORATION_LEFT, CORPORATION_JOINED, CORPORATION_DISBANDED, CORPORATION_CREATED,
    CORPORATION_RENAMED, CORPORATION_CEO_CHANGED, CORPORATION_TAX_CHANGED, MEMBER_COUNT_CHANGED,
    ALLIANCE_CLOSED, ALLIANCE_CREATED, ALLIANCE_RENAMED, ALLIANCE_EXECUTOR_CHANGED,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Alliance:
    id: int
    name: str
    ticker: str
    date_founded: datetime
    creator_corporation_id: int
    creator_id: int
    executor_corporation_id: int | None
    faction_id: int | None
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Corporation:
    """Canonical record; `tax_rate` is a fraction, shapes for either compatibility date derive from it."""

    id: int
    name: str
    ticker: str
    member_count: int
    ceo_id: int
    creator_id: int | None
    date_founded: datetime | None
    description: str | None
    alliance_id: int | None
    faction_id: int | None
    home_station_id: int | None
    shares: int | None
    tax_rate: float
    loyalty_point_tax_rate: float  # fraction, like tax_rate
    url: str | None
    war_eligible: bool | None
    state: str  # "active" | "closed" (closed = disbanded, ESI answers 404)
    type: str  # "player_owned" | "npc_owned"
    friendly_fire: str  # "legal" | "illegal"
    palette: tuple[str, ...] | None  # main, then optional secondary and tertiary colours

    @property
    def disbanded(self) -> bool:
        return self.state == "closed"

    @property
    def is_npc(self) -> bool:
        return self.type == "npc_owned"


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    record_id: int
    start_date: datetime
    alliance_id: int | None


@dataclass(frozen=True, slots=True)
class DriftEvent:
    kind: str
    id: int  # the corporation's or alliance's ID
    before: Any = None
    after: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "before": self.before, "after": self.after}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Universe:
    """One day's state. Build with `generate()`, move forward with `advance()`/`on_day()`."""

    def __init__(
        self,
        *,
        seed: int,
        day: int,
        alliances: dict[int, Alliance],
        corporations: dict[int, Corporation],
        histories: dict[int, tuple[HistoryRecord, ...]],
        characters: dict[int, str],
        next_record_id: int,
        drift_log: tuple[DriftEvent, ...] = (),
    ) -> None:
        self.seed = seed
        self.day = day
        self.drift_log = drift_log
        self._alliances = alliances
        self._corporations = corporations
        self._histories = histories
        self._characters = characters
        self._next_record_id = next_record_id
        members: dict[int, list[int]] = defaultdict(list)
        for corp in corporations.values():
            if corp.alliance_id is not None and not corp.disbanded:
                members[corp.alliance_id].append(corp.id)
        self._members = {aid: tuple(sorted(ids)) for aid, ids in members.items()}
        self._listed = tuple(sorted(a.id for a in alliances.values() if not a.closed))

    @classmethod
    def generate(cls, seed: int, alliances: int = 3616, corporations: int = 18000) -> Universe:
        """Day 0 for `seed`: `alliances` listed alliances holding `corporations` member corporations."""
        if alliances < 1 or corporations < alliances:
            raise ValueError("need alliances >= 1 and corporations >= alliances")
        return _Generator(seed, alliances, corporations).build()

    # --- queries -------------------------------------------------------------------------------------

    @property
    def as_of(self) -> datetime:
        return SIM_EPOCH + timedelta(days=self.day)

    def listed_alliance_ids(self) -> tuple[int, ...]:
        """What `GET /alliances` lists: active alliances, ascending."""
        return self._listed

    def all_alliance_ids(self) -> tuple[int, ...]:
        """Every alliance `GET /alliances/{id}` answers for, closed ones included."""
        return tuple(sorted(self._alliances))

    def alliance(self, alliance_id: int) -> Alliance | None:
        return self._alliances.get(alliance_id)

    def members(self, alliance_id: int) -> tuple[int, ...]:
        """Current member corporations, ascending; empty for closed or unknown alliances."""
        return self._members.get(alliance_id, ())

    def corporation(self, corporation_id: int) -> Corporation | None:
        """The corporation, or None when unknown or disbanded (ESI answers 404)."""
        corp = self._corporations.get(corporation_id)
        return None if corp is None or corp.disbanded else corp

    def corporation_record(self, corporation_id: int) -> Corporation | None:
        """Like `corporation()` but disbanded corporations too."""
        return self._corporations.get(corporation_id)

    def all_corporation_ids(self) -> tuple[int, ...]:
        """Every corporation ESI answers 200 for (members, unaffiliated and NPC), ascending."""
        return tuple(sorted(c.id for c in self._corporations.values() if not c.disbanded))

    def disbanded_corporation_ids(self) -> tuple[int, ...]:
        return tuple(sorted(c.id for c in self._corporations.values() if c.disbanded))

    def member_corporation_ids(self) -> tuple[int, ...]:
        return tuple(sorted(cid for ids in self._members.values() for cid in ids))

    def unaffiliated_corporation_ids(self) -> tuple[int, ...]:
        return tuple(
            sorted(c.id for c in self._corporations.values() if c.alliance_id is None and not c.disbanded)
        )

    def alliance_history(self, corporation_id: int) -> tuple[HistoryRecord, ...]:
        """Oldest first (ESI serves newest first)."""
        return self._histories.get(corporation_id, ())

    def characters(self) -> dict[int, str]:
        return dict(self._characters)

    def name_of(self, entity_id: int) -> tuple[str, str] | None:
        """(category, name) as `POST /universe/names` resolves it; disbanded/closed still resolve."""
        if entity_id in self._alliances:
            return "alliance", self._alliances[entity_id].name
        if entity_id in self._corporations:
            return "corporation", self._corporations[entity_id].name
        if entity_id in self._characters:
            return "character", self._characters[entity_id]
        return None

    def to_json(self) -> dict[str, Any]:
        """Everything, for `GET /_sim/universe` and out-of-process comparisons."""
        corporations = []
        corp_fields = [f.name for f in dataclasses.fields(Corporation)]
        for corp in sorted(self._corporations.values(), key=lambda c: c.id):
            row = {name: getattr(corp, name) for name in corp_fields}  # asdict() deep-copies: too slow here
            row["date_founded"] = iso(corp.date_founded) if corp.date_founded else None
            row["palette"] = list(corp.palette) if corp.palette else None
            row["disbanded"] = corp.disbanded
            corporations.append(row)
        alliances = []
        for alliance in sorted(self._alliances.values(), key=lambda a: a.id):
            row = dataclasses.asdict(alliance)
            row["date_founded"] = iso(alliance.date_founded)
            alliances.append(row)
        return {
            "seed": self.seed,
            "day": self.day,
            "as_of": iso(self.as_of),
            "listed_alliance_ids": list(self._listed),
            "alliances": alliances,
            "corporations": corporations,
            "memberships": {str(aid): list(self.members(aid)) for aid in self._listed},
            "characters": {str(cid): name for cid, name in sorted(self._characters.items())},
            "drift_log": [event.to_json() for event in self.drift_log],
        }

    # --- drift ---------------------------------------------------------------------------------------

    def advance(self, days: int = 1) -> Universe:
        """The deterministic state `days` later; `drift_log` holds only the last night's changes."""
        if days < 0:
            raise ValueError("days must be >= 0")
        universe = self
        for _ in range(days):
            universe = _Drift(universe).build()
        return universe

    def on_day(self, day: int) -> Universe:
        if day < self.day:
            raise ValueError(f"cannot go back from day {self.day} to day {day}; generate day 0 again")
        return self.advance(day - self.day)


def diff(before: Universe, after: Universe) -> dict[str, set[int]]:
    """Drift kinds (see DRIFT_KINDS) -> IDs that changed that way, recomputed from the two states."""
    changes: dict[str, set[int]] = {kind: set() for kind in DRIFT_KINDS}
    for cid, new in after._corporations.items():
        old = before._corporations.get(cid)
        if old is None:
            if not new.disbanded:
                changes[CORPORATION_CREATED].add(cid)
            continue
        if new.disbanded:
            if not old.disbanded:
                changes[CORPORATION_DISBANDED].add(cid)
            continue
        if old.alliance_id != new.alliance_id:
            kind = (
                CORPORATION_JOINED
                if old.alliance_id is None
                else CORPORATION_LEFT
                if new.alliance_id is None
                else CORPORATION_MOVED
            )
            changes[kind].add(cid)
        if (old.name, old.ticker) != (new.name, new.ticker):
            changes[CORPORATION_RENAMED].add(cid)
        if old.ceo_id != new.ceo_id:
            changes[CORPORATION_CEO_CHANGED].add(cid)
        if old.tax_rate != new.tax_rate:
            changes[CORPORATION_TAX_CHANGED].add(cid)
        if old.member_count != new.member_count:
            changes[MEMBER_COUNT_CHANGED].add(cid)
    for aid, new_a in after._alliances.items():
        old_a = before._alliances.get(aid)
        if old_a is None:
            changes[ALLIANCE_CREATED].add(aid)
            continue
        if new_a.closed and not old_a.closed:
            changes[ALLIANCE_CLOSED].add(aid)
        if (old_a.name, old_a.ticker) != (new_a.name, new_a.ticker):
            changes[ALLIANCE_RENAMED].add(aid)
        if not new_a.closed and old_a.executor_corporation_id != new_a.executor_corporation_id:
            changes[ALLIANCE_EXECUTOR_CHANGED].add(aid)
    return changes


# --- generation --------------------------------------------------------------------------------------


class _Ids:
    """Hands out unused IDs; EVE IDs are unique across entity kinds."""

    def __init__(self, rng: random.Random, used: Iterable[int] = ()) -> None:
        self._rng = rng
        self.used = set(used)
        self._tops: dict[tuple[int, int], int] = {}

    def draw(self, bounds: tuple[int, int]) -> int:
        while True:
            candidate = self._rng.randint(*bounds)
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate

    def ascending(self, bounds: tuple[int, int], count: int) -> list[int]:
        return sorted(self.draw(bounds) for _ in range(count))

    def after(self, bounds: tuple[int, int]) -> int:
        """A fresh ID above the highest used in `bounds`: new entities get increasing IDs, like ESI's."""
        if bounds not in self._tops:
            self._tops[bounds] = max((i for i in self.used if bounds[0] <= i <= bounds[1]), default=bounds[0])
        candidate = self._tops[bounds] + self._rng.randint(1, 40)
        if candidate > bounds[1] or candidate in self.used:
            return self.draw(bounds)
        self.used.add(candidate)
        self._tops[bounds] = candidate
        return candidate


def _between(rng: random.Random, start: datetime, end: datetime, skew: float = 1.0) -> datetime:
    """A whole-second moment in [start, end]; skew > 1 favours the start."""
    span = max(0, int((end - start).total_seconds()))
    return start + timedelta(seconds=int(span * rng.random() ** skew))


def _float_percent(rng: random.Random, choices: tuple[float, ...]) -> float:
    """A percentage with at most one decimal, as a fraction with at most three."""
    return round(rng.choice(choices) / 100, 3)


_TAX_PERCENTS = (0.0, 0.0, 5.0, 10.0, 10.0, 10.0, 7.5, 25.6, 1.0, 2.5, 100.0, 15.0, 12.3, 99.9, 50.0, 11.0)
_LP_PERCENTS = (0.0, 0.0, 0.0, 5.6, 10.0, 2.5, 100.0, 50.0)


class _Generator:
    def __init__(self, seed: int, alliances: int, corporations: int) -> None:
        self.seed = seed
        self.rng = random.Random(f"killreport-sim:{seed}:generate")
        self.ids = _Ids(self.rng)
        self.n_alliances = alliances
        self.n_members = corporations
        self.corp_names: set[str] = set()
        self.alliance_names: set[str] = set()
        self.char_names: set[str] = set()
        self.characters: dict[int, str] = {}

    def build(self) -> Universe:
        rng = self.rng
        sizes = self._alliance_sizes()
        n_unaffiliated = max(3, self.n_members // 60)
        founded = sorted(
            _between(rng, EVE_LAUNCH, ID_RANGE_SWITCH)
            if rng.random() < 0.03
            else _between(rng, ID_RANGE_SWITCH, SIM_EPOCH - timedelta(days=3), skew=0.6)
            for _ in range(self.n_members + n_unaffiliated)
        )
        n_old = sum(1 for d in founded if d < ID_RANGE_SWITCH)
        corp_ids = self.ids.ascending(OLD_IDS, n_old) + self.ids.ascending(
            PLAYER_CORPORATION_IDS, len(founded) - n_old
        )
        dates = dict(zip(corp_ids, founded, strict=True))
        shuffled = corp_ids[:]
        rng.shuffle(shuffled)

        # Alliances: creator is the earliest member; IDs ascend with founding date within each range.
        groups: list[list[int]] = []
        start = 0
        for size in sizes:
            groups.append(shuffled[start : start + size])
            start += size
        plans: list[tuple[datetime, int, list[int]]] = []  # (founded, creator corp, members)
        for members in groups:
            creator = min(members, key=lambda c: (dates[c], c))
            when = _between(rng, dates[creator], SIM_EPOCH - timedelta(days=2), skew=2.0)
            plans.append((when, creator, members))
        # Alliances closed before day 0: never listed, answer 200 without executor, show up in histories.
        for _ in range(max(1, self.n_alliances // 25)):
            creator = rng.choice(corp_ids)
            plans.append((_between(rng, dates[creator], SIM_EPOCH - timedelta(days=30)), creator, []))
        order = sorted(range(len(plans)), key=lambda i: (plans[i][0], i))
        n_old_alliances = sum(1 for i in order if plans[i][0] < ID_RANGE_SWITCH)
        alliance_ids = self.ids.ascending(OLD_IDS, n_old_alliances) + self.ids.ascending(
            ALLIANCE_IDS, len(order) - n_old_alliances
        )
        plan_ids = {i: aid for i, aid in zip(order, alliance_ids, strict=True)}

        corporations: dict[int, Corporation] = {}
        membership: dict[int, int] = {}
        for i, (_, _, members) in enumerate(plans):
            for cid in members:
                membership[cid] = plan_ids[i]
        for cid in corp_ids:
            corporations[cid] = self._player_corporation(cid, dates[cid], membership.get(cid))

        alliances: dict[int, Alliance] = {}
        special_slots = rng.sample(range(len(groups)), min(len(groups), len(text.SPECIAL_ALLIANCE_NAMES)))
        special = dict(zip(special_slots, text.SPECIAL_ALLIANCE_NAMES, strict=False))
        for i, (when, creator, members) in enumerate(plans):
            aid = plan_ids[i]
            if i in special:
                name, ticker = special[i]
                self.alliance_names.add(name)
            else:
                name = text.unique(text.alliance_name(rng), self.alliance_names, rng)
                ticker = text.ticker(rng)
            executor = max(members, key=lambda c: (corporations[c].member_count, -c)) if members else None
            alliances[aid] = Alliance(
                id=aid,
                name=name,
                ticker=ticker,
                date_founded=when,
                creator_corporation_id=creator,
                creator_id=corporations[creator].ceo_id,
                executor_corporation_id=None if rng.random() < 0.02 else executor,
                faction_id=rng.choice(FACTION_IDS) if members and rng.random() < 0.03 else None,
                closed=not members,
            )
        renamed = rng.sample(corp_ids, min(len(corp_ids), len(text.SPECIAL_CORPORATION_NAMES)))
        for cid, name in zip(renamed, text.SPECIAL_CORPORATION_NAMES, strict=False):
            corporations[cid] = dataclasses.replace(corporations[cid], name=name)

        histories, next_record_id = self._histories(corporations, alliances, plans, plan_ids)
        for corp in self._npc_corporations():
            corporations[corp.id] = corp
        return Universe(
            seed=self.seed,
            day=0,
            alliances=alliances,
            corporations=corporations,
            histories=histories,
            characters=self.characters,
            next_record_id=next_record_id,
        )

    def _alliance_sizes(self) -> list[int]:
        """Corporations per listed alliance: one giant, a long tail of 1-5, a few in the hundreds."""
        rng = self.rng
        biggest = min(
            max(1, round(self.n_alliances * BIGGEST_ALLIANCE_SHARE)), self.n_members - (self.n_alliances - 1)
        )
        others = self.n_alliances - 1
        if not others:
            return [self.n_members]
        sizes = [1] * others
        weights = [rng.paretovariate(1.2) for _ in range(others)]
        for i in rng.choices(range(others), weights=weights, k=self.n_members - biggest - others):
            sizes[i] += 1
        # Below the giant, but roomy enough that every corporation fits (small universes).
        cap = max(1, int(biggest * 0.6), -(-(self.n_members - biggest) // others))
        overflow = sum(max(0, s - cap) for s in sizes)
        sizes = [min(s, cap) for s in sizes]
        while overflow:
            i = rng.randrange(others)
            if sizes[i] < cap:
                sizes[i] += 1
                overflow -= 1
        sizes.insert(rng.randrange(len(sizes) + 1), biggest)
        return sizes

    def character(self, old: bool) -> int:
        cid = self.ids.draw(OLD_IDS if old else CHARACTER_IDS)
        self.characters[cid] = text.unique(text.character_name(self.rng), self.char_names, self.rng)
        return cid

    def _player_corporation(self, cid: int, founded: datetime, alliance_id: int | None) -> Corporation:
        rng = self.rng
        creator = self.character(founded < ID_RANGE_SWITCH)
        name = text.unique(text.corporation_name(rng), self.corp_names, rng)
        palette = None
        if rng.random() < 0.7:
            colours = [f"#{rng.randrange(0x1000000):06x}" for _ in range(rng.choice((1, 2, 2, 3)))]
            palette = tuple(colours)
        return Corporation(
            id=cid,
            name=name,
            ticker=text.ticker(rng),
            member_count=min(15000, int(rng.lognormvariate(1.6, 1.5)) + 1),
            ceo_id=creator if rng.random() < 0.55 else self.character(False),
            creator_id=creator,
            date_founded=founded,
            description=text.description(rng),
            alliance_id=alliance_id,
            faction_id=rng.choice(FACTION_IDS) if rng.random() < 0.04 else None,
            home_station_id=None if rng.random() < 0.1 else rng.choice(STATION_IDS),
            shares=None if rng.random() < 0.1 else (1000 if rng.random() < 0.9 else rng.randint(1, 10**6)),
            tax_rate=_float_percent(rng, _TAX_PERCENTS),
            loyalty_point_tax_rate=_float_percent(rng, _LP_PERCENTS),
            url=text.url(rng, name),
            war_eligible=None if rng.random() < 0.1 else rng.random() < 0.65,
            state="active",
            type="player_owned",
            friendly_fire="legal" if rng.random() < 0.4 else "illegal",
            palette=palette,
        )

    def _npc_corporations(self) -> list[Corporation]:
        """A handful of NPC corporations with ESI's legacy quirks (creator 1, no founding date, no tax)."""
        known = (
            (1000001, "Doomheim", "666", 5581366, None, 60000004),
            (1000063, "Amarr Constructions", "AC", 85, None, 60008494),
            (1000045, "Science and Trade Institute", "STI", 1619061, None, 60003760),
            (1000167, "State War Academy", "SWA", 24117, None, 60004588),
            (1000180, "State Protectorate", "SPRO", 24865, 500001, 60015069),
            (1000182, "Tribal Liberation Force", "TLF", 18211, 500002, 60011866),
            (1000125, "CONCORD", "CONCO", 0, None, None),
            (1000441, "Deathless Wraiths", "DWR", 0, None, 60015187),
        )
        corps = []
        for cid, name, ticker, members, faction, station in known:
            self.ids.used.add(cid)
            ceo = 1 if cid == 1000441 else self.ids.draw((3_000_001, 3_019_999))
            if ceo != 1:
                self.characters[ceo] = text.unique(text.character_name(self.rng), self.char_names, self.rng)
            corps.append(
                Corporation(
                    id=cid,
                    name=name,
                    ticker=ticker,
                    member_count=members,
                    ceo_id=ceo,
                    creator_id=1,
                    date_founded=None,
                    description=f"{name} is an NPC corporation." if self.rng.random() < 0.7 else None,
                    alliance_id=None,
                    faction_id=faction,
                    home_station_id=station,
                    shares=self.rng.choice((0, 15134828244, 1000000)),
                    tax_rate=0.0,
                    loyalty_point_tax_rate=0.0,
                    url="" if self.rng.random() < 0.7 else "None",
                    war_eligible=False,
                    state="active",
                    type="npc_owned",
                    friendly_fire="illegal",
                    palette=None,
                )
            )
        return corps

    def _histories(
        self,
        corporations: dict[int, Corporation],
        alliances: dict[int, Alliance],
        plans: list[tuple[datetime, int, list[int]]],
        plan_ids: dict[int, int],
    ) -> tuple[dict[int, tuple[HistoryRecord, ...]], int]:
        """Founding record, some past stints (closed alliances marked later), then the current alliance."""
        rng = self.rng
        creators = {plan_ids[i]: creator for i, (_, creator, members) in enumerate(plans) if members}
        pool = sorted(alliances.values(), key=lambda a: a.id)
        end_of_history = SIM_EPOCH - timedelta(hours=1)
        events: list[tuple[datetime, int, int, int | None]] = []  # (when, corp, seq, alliance)
        for corp in corporations.values():
            assert corp.date_founded is not None
            current = corp.alliance_id
            if current is None:
                end = SIM_EPOCH - timedelta(days=1)
            elif creators.get(current) == corp.id:
                end = alliances[current].date_founded
            else:
                end = _between(rng, max(corp.date_founded, alliances[current].date_founded), end_of_history)
            timeline: list[tuple[datetime, int | None]] = [(corp.date_founded, None)]
            stints = 0
            while rng.random() < 0.5 and stints < 8:
                stints += 1
            for when in sorted(_between(rng, corp.date_founded, end) for _ in range(stints)):
                previous = timeline[-1][1]
                if when <= timeline[-1][0]:
                    continue
                choice: int | None = None
                if previous is None or rng.random() < 0.5:
                    for _ in range(5):
                        candidate = rng.choice(pool)
                        if candidate.date_founded <= when and candidate.id not in (previous, current):
                            choice = candidate.id
                            break
                if choice != previous:
                    timeline.append((when, choice))
            if current is not None:
                if end <= timeline[-1][0]:
                    timeline = [(corp.date_founded, None)]
                    end = max(end, corp.date_founded + timedelta(seconds=1))
                timeline.append((end, current))
            elif timeline[-1][1] is not None:
                timeline.append((_between(rng, timeline[-1][0] + timedelta(seconds=1), end), None))
            for seq, (when, alliance_id) in enumerate(timeline):
                events.append((when, corp.id, seq, alliance_id))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        histories: dict[int, list[HistoryRecord]] = defaultdict(list)
        for record_id, (when, cid, _, alliance_id) in enumerate(events, start=1):
            histories[cid].append(HistoryRecord(record_id, when, alliance_id))
        return {cid: tuple(records) for cid, records in histories.items()}, len(events) + 1


# --- drift -------------------------------------------------------------------------------------------


class _Drift:
    """One night: the changes between `base` (day n) and day n + 1, with realistic magnitudes."""

    def __init__(self, base: Universe) -> None:
        self.base = base
        self.day = base.day + 1
        self.rng = random.Random(f"killreport-sim:{base.seed}:drift:{self.day}")
        self.night = base.as_of  # events happen during the day leading up to the new state
        self.corps = dict(base._corporations)
        self.alliances = dict(base._alliances)
        self.histories = dict(base._histories)
        self.characters = dict(base._characters)
        self.ids = _Ids(self.rng, [*self.corps, *self.alliances, *self.characters])
        self.members: dict[int, set[int]] = {
            aid: set(base.members(aid)) for aid in base.listed_alliance_ids()
        }
        self.touched: set[int] = set()
        self.log: list[DriftEvent] = []
        self.moves: list[tuple[datetime, int, int | None]] = []  # history entries to number at the end

    def moment(self) -> datetime:
        return self.night + timedelta(seconds=self.rng.randrange(86400 - 60))

    def pick(self, candidates: Iterable[int], count: int) -> list[int]:
        pool = sorted(c for c in candidates if c not in self.touched)
        chosen = self.rng.sample(pool, min(count, len(pool)))
        self.touched.update(chosen)
        return chosen

    def set_alliance(self, cid: int, alliance_id: int | None, when: datetime | None = None) -> None:
        corp = self.corps[cid]
        old = corp.alliance_id
        if old is not None:
            self.members[old].discard(cid)
        if alliance_id is not None:
            self.members.setdefault(alliance_id, set()).add(cid)
        self.corps[cid] = dataclasses.replace(corp, alliance_id=alliance_id)
        self.moves.append((when or self.moment(), cid, alliance_id))
        kind = (
            CORPORATION_JOINED
            if old is None
            else CORPORATION_LEFT
            if alliance_id is None
            else CORPORATION_MOVED
        )
        self.log.append(DriftEvent(kind, cid, old, alliance_id))

    def listed(self) -> list[int]:
        return sorted(aid for aid, ids in self.members.items() if ids and not self.alliances[aid].closed)

    def build(self) -> Universe:
        rng = self.rng
        listed = self.listed()
        member_ids = [cid for aid in listed for cid in self.members[aid]]
        unaffiliated = [
            c.id for c in self.corps.values() if c.alliance_id is None and not c.disbanded and not c.is_npc
        ]
        active = [c.id for c in self.corps.values() if not c.disbanded]
        n_corps, n_alliances = len(active), len(listed)
        biggest = max(listed, key=lambda aid: (len(self.members[aid]), aid))

        # A few alliances close; their corporations are left without one.
        small = [aid for aid in listed if aid != biggest and len(self.members[aid]) <= 20]
        for aid in rng.sample(small, min(len(small), max(1, round(n_alliances * 0.001)))):
            for cid in sorted(self.members[aid]):
                self.touched.add(cid)
                self.set_alliance(cid, None)
            self.close_alliance(aid)
        listed = self.listed()

        for cid in self.pick(
            (c for c in active if not self.corps[c].is_npc), max(1, round(n_corps * 0.0005))
        ):
            corp = self.corps[cid]
            if corp.alliance_id is not None:
                self.members[corp.alliance_id].discard(cid)
            self.corps[cid] = dataclasses.replace(corp, state="closed", alliance_id=None, member_count=0)
            self.log.append(DriftEvent(CORPORATION_DISBANDED, cid, corp.alliance_id, None))

        # Moves favour big alliances (as joins do), which keeps the size distribution stable over time.
        weights = [len(self.members[aid]) for aid in listed]
        movers = [cid for cid in member_ids if self.corps[cid].alliance_id is not None]
        for cid in self.pick(movers, max(1, round(len(member_ids) * 0.003))):
            current = self.corps[cid].alliance_id
            target = current
            while target == current and len(listed) > 1:
                target = rng.choices(listed, weights=weights)[0]
            if target != current:
                self.set_alliance(cid, target)
        # At least one executor walks out, so executor successions happen even in small universes.
        executors = []
        for aid in listed:
            executor = self.alliances[aid].executor_corporation_id
            if executor is not None and len(self.members[aid]) > 1:
                executors.append(executor)
        leavers = self.pick(executors, 1) + self.pick(movers, max(1, round(len(member_ids) * 0.002)))
        for cid in leavers:
            self.set_alliance(cid, None)
        for cid in self.pick(unaffiliated, max(1, round(len(member_ids) * 0.002))):
            self.set_alliance(cid, rng.choices(listed, weights=weights)[0])

        n_new_alliances = max(1, round(n_alliances * 0.001))
        n_new_corps = max(2, round(n_corps * 0.001))
        for i in range(n_new_alliances):
            if i % 2 == 0:
                founders = [self.new_corporation() for _ in range(rng.randint(1, 3))]
                n_new_corps -= len(founders)
            else:
                founders = self.pick(unaffiliated + member_ids, rng.randint(1, 2))
            if founders:
                self.new_alliance(founders)
        for _ in range(max(1, n_new_corps)):
            self.new_corporation()

        self.renames(active)
        for cid in self.pick(active, max(1, round(n_corps * 0.001))):
            corp = self.corps[cid]
            ceo = self.new_character()
            self.corps[cid] = dataclasses.replace(corp, ceo_id=ceo)
            self.log.append(DriftEvent(CORPORATION_CEO_CHANGED, cid, corp.ceo_id, ceo))
        for cid in self.pick(
            (c for c in active if not self.corps[c].is_npc), max(1, round(n_corps * 0.0005))
        ):
            corp = self.corps[cid]
            rate = corp.tax_rate
            while rate == corp.tax_rate:
                rate = _float_percent(rng, _TAX_PERCENTS)
            self.corps[cid] = dataclasses.replace(corp, tax_rate=rate)
            self.log.append(DriftEvent(CORPORATION_TAX_CHANGED, cid, corp.tax_rate, rate))
        for cid in sorted(rng.sample(active, max(1, len(active) // 5))):
            corp = self.corps[cid]
            if corp.disbanded:
                continue
            step = max(1, corp.member_count // 25)
            count = max(
                0 if corp.is_npc else 1, corp.member_count + rng.choice((-1, 1)) * rng.randint(1, step)
            )
            if count != corp.member_count:
                self.corps[cid] = dataclasses.replace(corp, member_count=count)
                self.log.append(DriftEvent(MEMBER_COUNT_CHANGED, cid, corp.member_count, count))

        self.settle_alliances()
        return Universe(
            seed=self.base.seed,
            day=self.day,
            alliances=self.alliances,
            corporations=self.corps,
            histories=self.histories_with_moves(),
            characters=self.characters,
            next_record_id=self.base._next_record_id + len(self.moves),
            drift_log=tuple(self.log),
        )

    def close_alliance(self, aid: int) -> None:
        self.alliances[aid] = dataclasses.replace(
            self.alliances[aid], closed=True, executor_corporation_id=None
        )
        self.log.append(DriftEvent(ALLIANCE_CLOSED, aid))

    def new_character(self) -> int:
        cid = self.ids.draw(CHARACTER_IDS)
        self.characters[cid] = f"{text.character_name(self.rng)} {cid % 1000}"
        return cid

    def new_corporation(self) -> int:
        rng = self.rng
        cid = self.ids.after(PLAYER_CORPORATION_IDS)
        founder = self.new_character()
        when = self.moment()
        name = f"{text.corporation_name(rng)} {self.day}-{cid % 10000}"
        self.corps[cid] = Corporation(
            id=cid,
            name=name,
            ticker=text.ticker(rng),
            member_count=rng.randint(1, 5),
            ceo_id=founder,
            creator_id=founder,
            date_founded=when,
            description=text.description(rng),
            alliance_id=None,
            faction_id=None,
            home_station_id=rng.choice(STATION_IDS),
            shares=1000,
            tax_rate=0.1,
            loyalty_point_tax_rate=0.0,
            url=text.url(rng, name),
            war_eligible=False,
            state="active",
            type="player_owned",
            friendly_fire="illegal",
            palette=None,
        )
        self.histories[cid] = ()
        self.moves.append((when, cid, None))
        self.touched.add(cid)
        self.log.append(DriftEvent(CORPORATION_CREATED, cid, None, None))
        return cid

    def new_alliance(self, founders: list[int]) -> None:
        aid = self.ids.after(ALLIANCE_IDS)
        creator = self.corps[founders[0]]
        newest = max(self.corps[c].date_founded or self.night for c in founders)
        when = max(self.moment(), newest + timedelta(seconds=60))
        self.alliances[aid] = Alliance(
            id=aid,
            name=f"{text.alliance_name(self.rng)} {self.day}-{aid % 10000}",
            ticker=text.ticker(self.rng),
            date_founded=when,
            creator_corporation_id=creator.id,
            creator_id=creator.ceo_id,
            executor_corporation_id=creator.id,
            faction_id=None,
        )
        self.log.append(DriftEvent(ALLIANCE_CREATED, aid, None, creator.id))
        for offset, cid in enumerate(founders):
            self.set_alliance(cid, aid, when + timedelta(seconds=offset))

    def renames(self, active: list[int]) -> None:
        rng = self.rng
        for cid in self.pick(
            (c for c in active if not self.corps[c].is_npc), max(1, round(len(active) * 0.0003))
        ):
            corp = self.corps[cid]
            name = f"{text.corporation_name(rng)} {self.day}-{cid % 10000}"
            ticker = text.ticker(rng) if rng.random() < 0.7 else corp.ticker
            self.corps[cid] = dataclasses.replace(corp, name=name, ticker=ticker)
            self.log.append(DriftEvent(CORPORATION_RENAMED, cid, [corp.name, corp.ticker], [name, ticker]))
        existing = [aid for aid in self.listed() if aid in self.base._alliances]
        for aid in rng.sample(existing, min(len(existing), max(1, round(len(existing) * 0.0005)))):
            alliance = self.alliances[aid]
            name = f"{text.alliance_name(rng)} {self.day}-{aid % 10000}"
            ticker = text.ticker(rng)
            self.alliances[aid] = dataclasses.replace(alliance, name=name, ticker=ticker)
            self.log.append(
                DriftEvent(ALLIANCE_RENAMED, aid, [alliance.name, alliance.ticker], [name, ticker])
            )

    def settle_alliances(self) -> None:
        """Alliances left empty close; an executor that left is replaced by the largest member."""
        for aid in sorted(self.members):
            alliance = self.alliances[aid]
            if alliance.closed:
                continue
            members = self.members[aid]
            if not members:
                self.close_alliance(aid)
            elif (
                alliance.executor_corporation_id is not None
                and alliance.executor_corporation_id not in members
            ):
                executor = max(members, key=lambda c: (self.corps[c].member_count, -c))
                self.alliances[aid] = dataclasses.replace(alliance, executor_corporation_id=executor)
                self.log.append(
                    DriftEvent(ALLIANCE_EXECUTOR_CHANGED, aid, alliance.executor_corporation_id, executor)
                )

    def histories_with_moves(self) -> dict[int, tuple[HistoryRecord, ...]]:
        """Append tonight's joins/leaves in time order; a brand-new corporation starts with its founding."""
        histories = self.histories
        ordered = sorted(self.moves, key=lambda m: (m[0], m[1]))
        for record_id, (when, cid, alliance_id) in enumerate(ordered, start=self.base._next_record_id):
            histories[cid] = (*histories.get(cid, ()), HistoryRecord(record_id, when, alliance_id))
        return histories
