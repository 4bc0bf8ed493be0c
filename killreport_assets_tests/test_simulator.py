"""The ESI simulator, exercised over real loopback HTTP.

Response bodies are validated against ESI's own schemas, copied into
`data/esi-openapi-excerpt.json`: the OpenAPI 3.1 spec of 2026-08-04 (autonomouslogic/eve-esi-proxy,
`src/main/resources/esi-openapi.json`) and, under `x-legacy-swagger-2.0-excerpt`, the legacy Swagger 2.0
spec (autonomouslogic/eve-ref, `spec/esi-swagger.json`). Time-dependent behaviour (windows, expiry,
downtime) runs on a fake clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft4Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from killreport_assets.simulator import SimulatorConfig, SimulatorProcess, SimulatorServer, Universe, diff
from killreport_assets.simulator.app import ERROR_LIMITED
from killreport_assets.simulator.shapes import float32
from killreport_assets.simulator.universe import DRIFT_KINDS, MEMBER_COUNT_CHANGED

SPEC = json.loads((Path(__file__).parent / "data" / "esi-openapi-excerpt.json").read_text())
SMALL = SimulatorConfig(alliances=300, corporations=1500, seed=7)
NEW_SHAPE = {"X-Compatibility-Date": "2026-08-04"}


def new_schema(name: str) -> Draft202012Validator:
    registry = Registry().with_resource("urn:esi", Resource(contents=SPEC, specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"urn:esi#/components/schemas/{name}"}, registry=registry)


def legacy_schema(path: str) -> Draft4Validator:
    return Draft4Validator(
        SPEC["x-legacy-swagger-2.0-excerpt"]["paths"][path]["get"]["responses"]["200"]["schema"]
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = float(int(time.time()) // 3600 * 3600 + 1)  # one second into an aligned window

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def default_universe() -> Universe:
    return Universe.generate(1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[SimulatorServer]:
    with SimulatorServer(SMALL, clock=clock) as server:
        yield server


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, trust_env=False) as http:
        yield http


def start(config: SimulatorConfig, clock: FakeClock | None = None) -> SimulatorServer:
    return SimulatorServer(config, clock=clock or time.time).start()


def test_bodies_match_esi_schemas(sim: SimulatorServer, client: httpx.Client) -> None:
    universe = sim.universe
    alliances = client.get("/alliances").json()
    new_schema("AlliancesGet").validate(alliances)
    legacy_schema("/alliances/").validate(alliances)
    closed = [a for a in universe.all_alliance_ids() if universe.alliance(a).closed]
    for aid in alliances[:40] + closed[:5]:
        detail = client.get(f"/alliances/{aid}").json()
        new_schema("AllianceDetail").validate(detail)
        legacy_schema("/alliances/{alliance_id}/").validate(detail)
        members = client.get(f"/alliances/{aid}/corporations").json()
        new_schema("AlliancesAllianceIdCorporationsGet").validate(members)
        legacy_schema("/alliances/{alliance_id}/corporations/").validate(members)
    corporations = universe.all_corporation_ids()
    for cid in corporations[:150] + corporations[-150:]:  # old-range IDs, NPC corporations, 98M range
        corp = universe.corporation(cid)
        legacy = client.get(f"/corporations/{cid}").json()
        legacy_schema("/corporations/{corporation_id}/").validate(legacy)
        assert legacy["tax_rate"] == float32(corp.tax_rate)
        new = client.get(f"/corporations/{cid}", headers=NEW_SHAPE).json()
        new_schema("CorporationsDetail").validate(new)
        assert new["tax_rates"]["isk"] == round(corp.tax_rate * 100, 1)
        assert "tax_rate" not in new and "faction_id" not in new
        new_schema("CorporationsCorporationIdAlliancehistoryGet").validate(
            client.get(f"/corporations/{cid}/alliancehistory").json()
        )
    names = client.post("/universe/names", json=[*alliances[:5], *corporations[:5]])
    new_schema("UniverseNamesPost").validate(names.json())
    new_schema("Error").validate(client.get("/corporations/1").json())


def test_float32_noise_and_awkward_values(default_universe: Universe) -> None:
    assert float32(0.1) == 0.10000000149011612
    corps = [default_universe.corporation(c) for c in default_universe.all_corporation_ids()]
    names = {c.name for c in corps}
    assert {"Zombies are People Too", 'Ünïcödé \'"Corp"'} <= names
    assert any(
        "<" in a.ticker for a in map(default_universe.alliance, default_universe.listed_alliance_ids())
    )
    descriptions = [c.description for c in corps]
    assert None in descriptions and "" in descriptions
    assert any(d and len(d) > 2000 and '<font size="12"' in d and "showinfo:2//" in d for d in descriptions)
    assert any(c.url is None for c in corps) and any(c.home_station_id is None for c in corps)
    npc = [c for c in corps if c.is_npc]
    assert npc and all(c.creator_id == 1 and c.tax_rate == 0 and c.date_founded is None for c in npc)
    assert all(1_000_000 <= c.id <= 1_999_999 for c in npc)


def test_determinism() -> None:
    first = Universe.generate(5, 200, 900)
    assert first.to_json() == Universe.generate(5, 200, 900).to_json()
    assert first.advance(2).to_json() == Universe.generate(5, 200, 900).on_day(2).to_json()
    assert first.to_json()["corporations"] != Universe.generate(6, 200, 900).to_json()["corporations"]
    config = SimulatorConfig(alliances=200, corporations=900, seed=5)
    with start(config) as one, start(config) as two, httpx.Client(trust_env=False) as http:
        for path in ("/alliances", f"/corporations/{first.member_corporation_ids()[3]}"):
            a, b = http.get(one.url + path), http.get(two.url + path)
            assert a.content == b.content and a.headers["etag"] == b.headers["etag"]


def test_default_size_distribution(default_universe: Universe) -> None:
    universe = default_universe
    listed = universe.listed_alliance_ids()
    sizes = [len(universe.members(a)) for a in listed]
    assert len(listed) == 3616
    assert 17_000 <= sum(sizes) <= 19_000
    assert 700 <= max(sizes) <= 850
    assert min(sizes) >= 1
    assert sum(1 for s in sizes if s <= 5) / len(sizes) > 0.75
    assert 100 <= len(universe.unaffiliated_corporation_ids()) <= 999
    assert all(99_000_000 <= a <= 99_999_999 or a >= 100_000_000 for a in listed)
    assert any(a >= 100_000_000 for a in listed)
    players = universe.member_corporation_ids()
    assert all(98_000_000 <= c <= 98_999_999 or c >= 100_000_000 for c in players)
    assert all(90_000_000 <= universe.corporation(c).ceo_id <= 2_100_000_000 for c in players)


def test_path_variants_share_one_resource(sim: SimulatorServer, client: httpx.Client) -> None:
    cid = sim.universe.member_corporation_ids()[0]
    aid = sim.universe.listed_alliance_ids()[0]
    for route in (f"/corporations/{cid}", f"/alliances/{aid}/corporations", "/alliances"):
        variants = [
            route,
            route + "/",
            "/latest" + route + "/",
            "/v5" + route,
            "/dev" + route,
            "/legacy" + route,
            route + "/?datasource=tranquility",
        ]
        responses = [client.get(v, headers={"X-Tenant": "tranquility"}) for v in variants]
        assert {r.status_code for r in responses} == {200}
        assert len({r.content for r in responses}) == 1 and len({r.headers["etag"] for r in responses}) == 1
    assert client.post("/latest/universe/names/", json=[cid]).status_code == 200


def test_corporation_shape_by_compatibility_date(sim: SimulatorServer, client: httpx.Client) -> None:
    cid = sim.universe.member_corporation_ids()[0]
    assert "tax_rate" in client.get(f"/corporations/{cid}").json()
    assert (
        "tax_rate"
        in client.get(f"/corporations/{cid}", headers={"X-Compatibility-Date": "2026-07-20"}).json()
    )
    assert (
        "tax_rates"
        in client.get(f"/corporations/{cid}", headers={"X-Compatibility-Date": "2026-07-21"}).json()
    )
    assert "state" in client.get(f"/corporations/{cid}?compatibility_date=2026-08-04").json()
    for bad in ("2099-01-01", "yesterday", "2026-13-01", "1999-01-01"):
        response = client.get(f"/corporations/{cid}", headers={"X-Compatibility-Date": bad})
        assert response.status_code == 400 and "error" in response.json()
    legacy_etag = client.get(f"/corporations/{cid}").headers["etag"]
    assert client.get(f"/corporations/{cid}", headers=NEW_SHAPE).headers["etag"] != legacy_etag


def test_headers_and_conditional_requests(sim: SimulatorServer, client: httpx.Client) -> None:
    cid = sim.universe.member_corporation_ids()[0]
    first = client.get(f"/corporations/{cid}")
    headers = first.headers
    assert headers["content-type"] == "application/json; charset=UTF-8"
    assert headers["cache-control"] == "public, max-age=3600"
    assert headers["etag"].startswith('"') and len(headers["x-esi-request-id"]) == 36
    expires, date = (parsedate_to_datetime(headers[name]).timestamp() for name in ("expires", "date"))
    assert expires >= date + 3600
    assert headers["x-esi-error-limit-remain"] == "100" and int(headers["x-esi-error-limit-reset"]) > 0
    for condition in (
        {"If-None-Match": headers["etag"]},
        {"If-None-Match": "W/" + headers["etag"]},
        {"If-Modified-Since": headers["last-modified"]},
    ):
        cached = client.get(f"/corporations/{cid}", headers=condition)
        assert cached.status_code == 304 and cached.content == b""
        for name in ("etag", "expires", "date", "cache-control", "x-esi-error-limit-remain"):
            assert name in cached.headers
    assert client.get(f"/corporations/{cid}", headers={"If-None-Match": '"other"'}).status_code == 200
    weak = client.get(f"/corporations/{cid}/alliancehistory")
    assert weak.headers["etag"].startswith('W/"')
    assert (
        client.get(
            f"/corporations/{cid}/alliancehistory", headers={"If-None-Match": weak.headers["etag"]}
        ).status_code
        == 304
    )
    stats = sim.stats()
    assert stats["conditional_requests"] == 5 and stats["not_modified"] == 4
    assert client.get("/_sim/stats").json()["requests"] == stats["requests"]  # admin calls are not counted


def test_not_found_and_bad_requests(sim: SimulatorServer, client: httpx.Client) -> None:
    universe = sim.universe
    assert client.get("/alliances/99999999999").json() == {"error": "Alliance not found"}
    assert client.get("/corporations/12345").json() == {"error": "Corporation not found"}
    assert client.get("/corporations/12345").status_code == 404
    assert client.get("/corporations/x1").status_code == 400
    known = [universe.listed_alliance_ids()[0], universe.member_corporation_ids()[0]]
    ceo = universe.corporation(known[1]).ceo_id
    resolved = client.post("/universe/names", json=[*known, ceo]).json()
    assert [r["category"] for r in resolved] == ["alliance", "corporation", "character"]
    unknown = client.post("/universe/names", json=[*known, 12345])
    assert unknown.status_code == 404 and unknown.json() == {
        "error": "Ensure all IDs are valid before resolving"
    }
    for body in ([], list(range(1, 1002)), ["a"], {"ids": [1]}):
        assert client.post("/universe/names", json=body).status_code == 400
    closed = next(a for a in universe.all_alliance_ids() if universe.alliance(a).closed)
    assert closed not in client.get("/alliances").json()
    assert "executor_corporation_id" not in client.get(f"/alliances/{closed}").json()
    assert client.get(f"/alliances/{closed}/corporations").json() == []


def test_error_limit(sim: SimulatorServer, client: httpx.Client, clock: FakeClock) -> None:
    cid = sim.universe.member_corporation_ids()[0]
    etag = client.get(f"/corporations/{cid}").headers["etag"]
    assert (
        client.get(f"/corporations/{cid}", headers={"If-None-Match": etag}).headers[
            "x-esi-error-limit-remain"
        ]
        == "100"
    )
    for i in range(100):
        response = client.get("/corporations/12345")
        assert response.status_code == 404
        assert response.headers["x-esi-error-limit-remain"] == str(99 - i)
    limited = client.get(f"/corporations/{cid}")
    assert limited.status_code == 420
    assert limited.json()["error"] == ERROR_LIMITED.format(59)
    assert (
        limited.headers["x-esi-error-limit-remain"] == "0"
        and limited.headers["x-esi-error-limit-reset"] == "59"
    )
    assert client.get("/alliances").status_code == 420  # every route
    clock.now += 59
    assert client.get(f"/corporations/{cid}").status_code == 200
    assert client.post("/_sim/exhaust-error-limit").json()["reset"] == 60
    assert client.get("/alliances").status_code == 420
    stats = sim.stats()
    assert stats["error_limited"] == 3 and stats["by_route"]["GET /corporations/{id}"]["404"] == 100


def test_bucket_mode(clock: FakeClock) -> None:
    config = SMALL.replace(rate_limit_mode="bucket", bucket_tokens=10, bucket_window=60)
    with start(config, clock) as sim, httpx.Client(base_url=sim.url, trust_env=False) as client:
        cid = sim.universe.member_corporation_ids()[0]
        first = client.get(f"/corporations/{cid}")
        assert first.headers["x-ratelimit-group"] == "corporation"
        assert first.headers["x-ratelimit-limit"] == "10/1m"
        assert (first.headers["x-ratelimit-used"], first.headers["x-ratelimit-remaining"]) == ("2", "8")
        assert "x-esi-error-limit-remain" not in first.headers
        clock.now += 10
        assert client.get("/corporations/12345").headers["x-ratelimit-used"] == "5"  # 404 costs 5 -> 3 left
        assert (
            client.get(f"/corporations/{cid}", headers={"If-None-Match": first.headers["etag"]}).headers[
                "x-ratelimit-remaining"
            ]
            == "2"
        )  # 304 costs 1
        client.get(f"/corporations/{cid}/alliancehistory")  # same group: 0 left
        limited = client.get(f"/corporations/{cid}")
        assert (
            limited.status_code == 429
            and limited.headers["retry-after"] == "50"
            and "error" in limited.json()
        )
        assert client.get("/alliances").status_code == 200  # other group, other bucket
        clock.now += 50
        assert client.get(f"/corporations/{cid}").status_code == 200
        assert sim.stats()["rate_limited"] == 1
        sim.configure(bucket_window=10)
        assert client.get("/alliances").headers["x-ratelimit-limit"] == "10/10s"


def test_faults_at_a_rate() -> None:
    with (
        start(SMALL.replace(fault_rate=0.2, error_limit=10**6)) as sim,
        httpx.Client(base_url=sim.url, trust_env=False) as client,
    ):
        responses = [client.get("/alliances") for _ in range(1000)]
    faults = [r for r in responses if r.status_code >= 500]
    assert 140 <= len(faults) <= 260
    assert {r.status_code for r in faults} == {502, 503, 504}
    html = [r for r in faults if r.headers["content-type"].startswith("text/html")]
    assert html and all(r.status_code == 504 and "x-esi-error-limit-remain" not in r.headers for r in html)
    assert {r.json()["error"] for r in faults if r not in html} == {
        "No reply within 10 seconds",
        "The datasource tranquility is temporarily unavailable",
        "Timeout contacting tranquility",
    }
    assert sim.stats()["faults_injected"] == len(faults)


def test_latency_does_not_block(sim: SimulatorServer) -> None:
    sim.configure(latency_ms=200, jitter_ms=20)

    async def fetch_all() -> list[int]:
        async with httpx.AsyncClient(base_url=sim.url, trust_env=False) as http:
            return [r.status_code for r in await asyncio.gather(*(http.get("/alliances") for _ in range(20)))]

    began = time.perf_counter()
    assert asyncio.run(fetch_all()) == [200] * 20
    elapsed = time.perf_counter() - began
    assert 0.18 <= elapsed < 2.0  # concurrent, not 20 x 200 ms


def test_poison_ids(sim: SimulatorServer, client: httpx.Client) -> None:
    corp, other = sim.universe.member_corporation_ids()[:2]
    alliance = sim.universe.listed_alliance_ids()[0]
    client.post("/_sim/config", json={"poison_corporations": [corp], "poison_alliances": [alliance]})
    for path in (
        f"/corporations/{corp}",
        f"/corporations/{corp}/alliancehistory",
        f"/alliances/{alliance}",
        f"/alliances/{alliance}/corporations",
    ):
        response = client.get(path)
        assert response.status_code == 500 and response.json() == {
            "error": "Unhandled internal error encountered!"
        }
    assert client.get(f"/corporations/{other}").status_code == 200
    assert client.post("/_sim/config", json={"seed": 3}).status_code == 400


def test_downtime(clock: FakeClock) -> None:
    moment = time.gmtime(clock.now)
    window = f"{moment.tm_hour:02d}:{moment.tm_min:02d}-{(moment.tm_hour + 1) % 24:02d}:{moment.tm_min:02d}"
    with (
        start(SMALL.replace(downtime=window), clock) as sim,
        httpx.Client(base_url=sim.url, trust_env=False) as client,
    ):
        down = client.get("/alliances")
        assert down.status_code == 503
        assert down.json() == {"error": "The datasource tranquility is temporarily unavailable"}
        clock.now += 3600
        assert client.get("/alliances").status_code == 200
        client.post("/_sim/downtime", json={"seconds": 30})
        assert client.post("/universe/names", json=[1000001]).status_code == 503
        clock.now += 30
        assert client.post("/universe/names", json=[1000001]).status_code == 200
        assert sim.stats()["faults"]["downtime"] == 2


def test_drift(sim: SimulatorServer, client: httpx.Client) -> None:
    before = sim.universe
    listed_before = client.get("/alliances").json()
    etags = {
        cid: client.get(f"/corporations/{cid}").headers["etag"]
        for cid in before.member_corporation_ids()[:300]
    }
    switched = client.post("/_sim/day", json={"day": 1}).json()
    after = sim.universe
    assert switched["day"] == 1 and after.day == 1
    changes = diff(before, after)
    logged: dict[str, set[int]] = {kind: set() for kind in DRIFT_KINDS}
    for event in after.drift_log:
        logged[event.kind].add(event.id)
    for kind in DRIFT_KINDS:
        assert changes[kind], kind
        assert changes[kind] <= logged[kind], kind
    assert len(changes[MEMBER_COUNT_CHANGED]) > 0.1 * len(before.all_corporation_ids())

    listed = client.get("/alliances").json()
    assert set(listed) == set(after.listed_alliance_ids()) != set(listed_before)
    for aid in changes["alliance_closed"]:
        assert aid not in listed and client.get(f"/alliances/{aid}/corporations").json() == []
        assert "executor_corporation_id" not in client.get(f"/alliances/{aid}").json()
    for aid in changes["alliance_created"]:
        assert aid in listed and client.get(f"/alliances/{aid}/corporations").json()
    for cid in changes["corporation_disbanded"]:
        assert client.get(f"/corporations/{cid}").status_code == 404
    for kind in ("corporation_moved", "corporation_left", "corporation_joined"):
        for cid in changes[kind]:
            body = client.get(f"/corporations/{cid}").json()
            history = client.get(f"/corporations/{cid}/alliancehistory").json()
            assert (
                body.get("alliance_id") == after.corporation(cid).alliance_id == history[0].get("alliance_id")
            )
            assert [h["record_id"] for h in history] == sorted(
                (h["record_id"] for h in history), reverse=True
            )
            if body.get("alliance_id"):
                assert cid in client.get(f"/alliances/{body['alliance_id']}/corporations").json()
    for cid in changes["corporation_renamed"]:
        assert client.get(f"/corporations/{cid}").json()["name"] == after.corporation(cid).name
    # Unchanged content keeps its ETag across days, so a conditional request still gets a 304.
    unchanged = [c for c, tag in etags.items() if after.corporation(c) == before.corporation(c)]
    changed = [c for c in etags if c in changes[MEMBER_COUNT_CHANGED]]
    assert unchanged and changed
    assert (
        client.get(
            f"/corporations/{unchanged[0]}", headers={"If-None-Match": etags[unchanged[0]]}
        ).status_code
        == 304
    )
    assert (
        client.get(f"/corporations/{changed[0]}", headers={"If-None-Match": etags[changed[0]]}).status_code
        == 200
    )


def test_sim_universe_matches_routes(sim: SimulatorServer, client: httpx.Client) -> None:
    client.post("/_sim/day", json={"day": 2})
    table = client.get("/_sim/universe").json()
    assert table["day"] == 2 and table["listed_alliance_ids"] == client.get("/alliances").json()
    alliances = {a["id"]: a for a in table["alliances"]}
    for aid in table["listed_alliance_ids"][::10]:
        detail = client.get(f"/alliances/{aid}").json()
        for field in ("name", "ticker", "creator_corporation_id", "creator_id", "date_founded"):
            assert detail[field] == alliances[aid][field]
        assert detail.get("executor_corporation_id") == alliances[aid]["executor_corporation_id"]
        assert client.get(f"/alliances/{aid}/corporations").json() == table["memberships"][str(aid)]
    for row in table["corporations"][::15]:
        response = client.get(f"/corporations/{row['id']}")
        if row["disbanded"]:
            assert response.status_code == 404
            continue
        body = response.json()
        for field in (
            "name",
            "ticker",
            "member_count",
            "ceo_id",
            "alliance_id",
            "description",
            "url",
            "shares",
        ):
            assert body.get(field) == row[field], field
        assert body["tax_rate"] == float32(row["tax_rate"])


def test_history_is_consistent(default_universe: Universe) -> None:
    universe = default_universe
    for cid in universe.all_corporation_ids():
        history = universe.alliance_history(cid)
        corp = universe.corporation(cid)
        if corp.is_npc:
            continue
        assert [r.record_id for r in history] == sorted(r.record_id for r in history)
        assert [r.start_date for r in history] == sorted(r.start_date for r in history)
        assert history[-1].alliance_id == corp.alliance_id
        assert all(a.alliance_id != b.alliance_id for a, b in zip(history, history[1:], strict=False))


def test_early_requests(sim: SimulatorServer, client: httpx.Client, clock: FakeClock) -> None:
    sim.configure(cache_ttl=100)
    cid = sim.universe.member_corporation_ids()[0]
    first = client.get(f"/corporations/{cid}")
    client.get(f"/corporations/{cid}", headers=NEW_SHAPE)  # another shape is another resource
    assert sim.stats()["early_requests"] == 0
    clock.now += 50
    client.get(f"/corporations/{cid}", headers={"If-None-Match": first.headers["etag"]})  # early, even if 304
    sim.reset_stats()
    clock.now += 10
    client.get(f"/corporations/{cid}/")  # still before the Expires the 304 announced
    assert sim.stats()["early_requests"] == 1
    clock.now += 101
    client.get(f"/corporations/{cid}")
    stats = sim.stats()
    assert stats["early_requests"] == 1 and stats["early_by_route"] == {"GET /corporations/{id}": 1}


def test_subprocess_and_cli() -> None:
    config = SimulatorConfig(alliances=50, corporations=200, seed=3, poison_corporations=frozenset({1000001}))
    with SimulatorProcess(config) as process:
        assert process.url.startswith("http://127.0.0.1:")
        assert len(httpx.get(process.url + "/alliances", trust_env=False).json()) == 50
        assert httpx.get(process.url + "/corporations/1000001", trust_env=False).status_code == 500
        assert process.set_day(1)["day"] == 1
        assert process.configure(poison_alliances={99_000_001}, downtime=None)["poison_alliances"] == [
            99_000_001
        ]
        assert process.stats()["requests"] == 2
    assert process.returncode == 0  # SIGTERM ends it cleanly
    module = [sys.executable, "-m", "killreport_assets.simulator"]
    bad = subprocess.run([*module, "--fault-rate", "2"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--fault-rate" in bad.stderr
    remote = subprocess.run(
        [*module, "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=60
    )
    assert remote.returncode == 2 and "--allow-remote" in remote.stderr
    few = subprocess.run(
        [*module, "--alliances", "10", "--corporations", "5"], capture_output=True, text=True, timeout=60
    )
    assert few.returncode == 2 and "--corporations" in few.stderr


@pytest.mark.parametrize(("alliances", "corporations"), [(1, 10), (2, 3), (20, 100), (40, 250), (40, 400)])
def test_small_universes_hold_exactly_the_requested_member_corporations(
    alliances: int, corporations: int
) -> None:
    universe = Universe.generate(1, alliances, corporations)
    assert len(universe.listed_alliance_ids()) == alliances
    assert len(universe.member_corporation_ids()) == corporations
