"""RedisRateLimiter against a real redis-server: the Lua script's arithmetic, read from
the reservations it returns (Redis TIME is not the virtual clock, so no timing asserts),
failure when Redis goes away, sharding, and N processes sharing one key's budget."""

from __future__ import annotations

import asyncio
import itertools
import math
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path

import msgspec
import pytest
import redis.asyncio
from conftest import API_KEY

import keyapi_async as ka
from keyapi_async.limiting.redis import (
    STATE_RETENTION,
    RateLimiterUnavailableError,
    RedisRateLimiter,
    budget_name,
    parse_shard,
    shard_filter,
)
from keyapi_async.testing import FakeKeyAPI
from keyapi_async.testing._redis_server import record_slots

REPO = Path(__file__).resolve().parents[2]
MakeLimiter = Callable[..., RedisRateLimiter]


@pytest.fixture
async def conn(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def redis_now_us(conn: redis.asyncio.Redis) -> int:
    seconds, micros = await conn.time()
    return int(seconds) * 1_000_000 + int(micros)


# -- the script's arithmetic ----------------------------------------------------------


async def test_first_slot_is_now_on_the_redis_clock(
    make_limiter: MakeLimiter, conn: redis.asyncio.Redis
) -> None:
    limiter = make_limiter(10)
    before = await redis_now_us(conn)
    slot, delay = await limiter.reserve()
    after = await redis_now_us(conn)
    assert before <= slot <= after
    assert delay == 0


async def test_reservations_are_spaced_by_exactly_one_interval(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(50, headroom=0)
    assert limiter.interval_us == 20_000
    reservations = [await limiter.reserve() for _ in range(10)]
    slots = [slot for slot, _ in reservations]
    assert [b - a for a, b in itertools.pairwise(slots)] == [20_000] * 9
    # The delay is the wait until the slot, measured on Redis's clock at reservation.
    delays = [delay for _, delay in reservations]
    assert delays[0] == 0
    assert all(0 < d <= 9 * 20_000 for d in delays[1:])
    assert delays == sorted(delays)


@pytest.mark.parametrize(
    ("qps", "headroom", "interval_us"),
    [
        (10, 0.02, 102_041),  # 1e6 / 9.8 rounded up: never faster than qps * (1 - headroom)
        (200, 0.02, 5_103),
        (3, 0.0, 333_334),
        (2.5, 0.1, 444_445),
    ],
)
async def test_interval_keeps_the_headroom(
    make_limiter: MakeLimiter, qps: float, headroom: float, interval_us: int
) -> None:
    limiter = make_limiter(qps, headroom=headroom)
    assert limiter.interval_us == interval_us
    first, _ = await limiter.reserve()
    second, _ = await limiter.reserve()
    assert second - first == interval_us >= 1_000_000 / qps


@pytest.mark.parametrize("qps", [5, 7.5, 40])
async def test_concurrent_workers_get_distinct_evenly_spaced_slots_and_no_burst(
    make_limiter: MakeLimiter, qps: float
) -> None:
    name = f"shared-{uuid.uuid4().hex}"
    workers = [make_limiter(qps, name=name) for _ in range(3)]  # three connection pools
    n = int(qps * 3) + 2
    reservations = await asyncio.gather(*(workers[i % 3].reserve() for i in range(n)))
    slots = sorted(slot for slot, _ in reservations)
    interval = workers[0].interval_us
    assert [b - a for a, b in itertools.pairwise(slots)] == [interval] * (n - 1)
    # No burst at start-up: the first second holds no more than qps (ceil for fractions).
    assert sum(1 for s in slots if s - slots[0] < 1_000_000) <= math.ceil(qps)
    # Every one-second window likewise.
    assert max(sum(1 for s in slots if t <= s < t + 1_000_000) for t in slots) <= math.ceil(qps)


async def test_names_are_independent_budgets(make_limiter: MakeLimiter) -> None:
    a, b = make_limiter(1), make_limiter(1)
    await a.reserve()
    _, delay_a = await a.reserve()
    _, delay_b = await b.reserve()
    assert delay_a > 0
    assert delay_b == 0


async def test_penalize_pushes_every_workers_next_slot_past_the_pause(
    make_limiter: MakeLimiter, conn: redis.asyncio.Redis
) -> None:
    name = f"shared-{uuid.uuid4().hex}"
    one, other = make_limiter(100, name=name), make_limiter(100, name=name)
    await one.reserve()
    before = await redis_now_us(conn)
    await one.penalize(2.0)
    slot, delay = await other.reserve()
    assert slot >= before + 2_000_000
    assert delay > 1_000_000  # the other worker sleeps out the pause
    following, _ = await other.reserve()
    assert following - slot == other.interval_us  # the pause ends with one start, then pacing


async def test_a_shorter_pause_never_shortens_a_longer_one(
    make_limiter: MakeLimiter, conn: redis.asyncio.Redis
) -> None:
    limiter = make_limiter(100)
    before = await redis_now_us(conn)
    await limiter.penalize(3.0)
    await limiter.penalize(0.5)
    await limiter.penalize(-1)  # clamped to zero, harmless
    slot, _ = await limiter.reserve()
    assert slot >= before + 3_000_000


async def test_confirm_keeps_a_slot_no_pause_covers(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(10)
    await limiter.reserve()
    slot, _ = await limiter.reserve()
    assert await limiter.confirm(slot) == (slot, 0)
    # Confirming reserves nothing: the next slot is still one interval on.
    following, _ = await limiter.reserve()
    assert following - slot == limiter.interval_us


async def test_confirm_moves_a_slot_reserved_before_a_pause_to_after_it(
    make_limiter: MakeLimiter, conn: redis.asyncio.Redis
) -> None:
    limiter = make_limiter(10)
    await limiter.reserve()
    early, _ = await limiter.reserve()  # reserved, its worker asleep
    before = await redis_now_us(conn)
    await limiter.penalize(1.5)  # another worker saw a 429
    slot, delay = await limiter.confirm(early)
    assert slot >= before + 1_500_000 > early
    assert delay > 0
    following, _ = await limiter.reserve()
    assert following - slot == limiter.interval_us


async def test_the_key_expires_once_its_times_are_past(
    make_limiter: MakeLimiter, conn: redis.asyncio.Redis
) -> None:
    limiter = make_limiter(10)
    await limiter.reserve()
    ttl = await conn.pttl(limiter.key)
    assert 0 < ttl <= math.ceil(limiter.interval_us / 1000) + 2
    assert set(await conn.hkeys(limiter.key)) == {b"tat", b"resume", b"phase", b"origin"}
    assert await conn.hget(limiter.key, "phase") == b"steady"  # nothing learned to keep
    await limiter.penalize(5.0)
    ttl = await conn.pttl(limiter.key)
    assert 4_000 < ttl <= 5_000 + math.ceil(limiter.interval_us / 1000) + 2
    # Expired and absent mean the same: times in the past. A fresh key starts at now.
    await conn.delete(limiter.key)
    _, delay = await limiter.reserve()
    assert delay == 0


async def test_times_survive_as_exact_integers(
    make_limiter: MakeLimiter, conn: redis.asyncio.Redis
) -> None:
    # Lua's tostring keeps 14 digits; microsecond times have 16. Stored with %d, exactly.
    limiter = make_limiter(7)
    slot, _ = await limiter.reserve()
    stored = await conn.hget(limiter.key, "tat")
    assert stored == str(slot + limiter.interval_us).encode()


# -- the shared adaptive rate ------------------------------------------------------------


async def test_a_429_seen_by_one_worker_lowers_the_rate_of_all(make_limiter: MakeLimiter) -> None:
    name = f"shared-{uuid.uuid4().hex}"
    one, other = make_limiter(50, name=name, headroom=0), make_limiter(50, name=name, headroom=0)
    await one.acquire()
    started = asyncio.get_running_loop().time()
    await one.on_throttle(started)
    assert 40 <= one.qps < 45 and one.learned_qps == pytest.approx(50)
    first, _ = await other.reserve()
    second, _ = await other.reserve()
    # Shared: the other worker paces at the lowered rate too (recovering from 40 along
    # the cubic curve, some 10 qps a second at first), not at 50.
    assert 40 <= other.qps < 45 and other.learned_qps == pytest.approx(50)
    assert second - first >= 1_000_000 / 45


async def test_one_decrease_per_congestion_event_across_workers(
    make_limiter: MakeLimiter,
) -> None:
    name = f"shared-{uuid.uuid4().hex}"
    one, other = make_limiter(50, name=name), make_limiter(50, name=name)
    loop = asyncio.get_running_loop()
    # Both workers' requests started (1 s ago) before the first 429 came back. (The
    # comparison is on Redis' clock, converted through each request's age: exact to the
    # jitter of one round trip to Redis, which 1 s covers on a loaded machine too.)
    in_flight = loop.time() - 1.0
    await one.on_throttle(in_flight)
    await other.on_throttle(in_flight)  # the same event, seen by the other worker
    assert 40 <= other.qps < 45
    await other.on_throttle(loop.time())  # a request started after the decrease: new event
    assert 32 <= other.qps < 36


async def test_a_cut_holds_back_a_slot_reserved_before_it(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(10)
    await limiter.reserve()
    early, delay = await limiter.reserve()  # reserved, its worker asleep
    await limiter.on_throttle(asyncio.get_running_loop().time())  # another worker's 429
    slot, _ = await limiter.confirm(early, early - delay)
    assert slot > early  # a fresh slot, paced at the lowered rate


async def test_auto_is_shared_slow_start_then_seeded(make_limiter: MakeLimiter) -> None:
    name = f"auto-{uuid.uuid4().hex}"
    one = make_limiter("auto", name=name, max_qps=100)
    assert one.qps == 5 and one.max_qps == 100
    first, _ = await one.reserve()
    second, _ = await one.reserve()
    assert second - first == math.ceil(1_000_000 / (5 * 0.98))  # slow start: 5 a second
    # A resumed crawl seeds the learned rate, once, for every worker.
    other = make_limiter("auto", name=name, max_qps=100)
    assert await other.seed(30.0)
    assert not await one.seed(90.0)  # already learned: the first seed stands
    await one.reserve()
    assert 24 <= one.qps < 27 and one.learned_qps == 30


async def test_a_learned_rate_is_kept_for_a_while(
    make_limiter: MakeLimiter, conn: redis.asyncio.Redis
) -> None:
    limiter = make_limiter(10)
    await limiter.on_throttle(asyncio.get_running_loop().time())
    ttl = await conn.pttl(limiter.key)
    assert ttl > (STATE_RETENTION - 5) * 1000
    assert await conn.hget(limiter.key, "phase") == b"cubic"


# -- configuration and failure ----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"qps": 0},
        {"qps": -1},
        {"qps": math.inf},
        {"qps": "5"},
        {"qps": 5, "headroom": 1},
        {"qps": 5, "name": ""},
        {"qps": 5, "timeout": 0},
        {"qps": "fast"},
        {"qps": 5, "max_qps": 10},
    ],
)
def test_bad_arguments_are_configuration_errors(kwargs: dict[str, object]) -> None:
    kwargs.setdefault("name", "n")
    with pytest.raises(ka.ConfigurationError):
        RedisRateLimiter("redis://127.0.0.1:1/0", **kwargs)  # type: ignore[arg-type]


def test_bad_url_is_a_configuration_error() -> None:
    with pytest.raises(ka.ConfigurationError, match="redis_url"):
        RedisRateLimiter("http://127.0.0.1/", name="n", qps=5)


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ka.ConfigurationError, match=r"keyapi-async\[redis\]"):
        RedisRateLimiter("redis://127.0.0.1:6379/0", name="n", qps=5)


def test_importing_the_package_does_not_import_redis() -> None:
    code = (
        "import sys, keyapi_async as ka\n"
        "assert 'redis' not in sys.modules, 'redis imported eagerly'\n"
        "assert ka.RedisRateLimiter.__name__ == 'RedisRateLimiter'\n"
        "assert 'RedisRateLimiter' in ka.__all__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_repr_never_shows_the_url_password() -> None:
    limiter = RedisRateLimiter("redis://:hunter2secret@127.0.0.1:1/0", name="key-a", qps=5)
    assert "hunter2secret" not in repr(limiter)
    assert "key-a" in repr(limiter)
    await limiter.aclose()


async def test_unreachable_redis_raises_a_fatal_typed_error() -> None:
    # Port 1 on 127.0.0.1: nothing listens, the connection is refused at once.
    async with RedisRateLimiter(
        "redis://:hunter2secret@127.0.0.1:1/0", name="n", qps=5, timeout=1
    ) as limiter:
        with pytest.raises(RateLimiterUnavailableError) as info:
            await limiter.acquire()
        assert info.value.fatal and not info.value.retryable
        assert isinstance(info.value, ka.KeyAPIError)
        assert "hunter2secret" not in str(info.value)
        with pytest.raises(RateLimiterUnavailableError):
            await limiter.penalize(1.0)


async def test_redis_lost_mid_crawl_fails_cleanly_and_accounts_for_every_id(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, redis_proc = own_redis
    async with FakeKeyAPI({API_KEY: None}) as server:
        ids = server.make_ids(300)
        limiter = RedisRateLimiter(url, name="mid-crawl", qps=40, timeout=1)
        client = ka.KeyAPIClient(API_KEY, base_url=server.url, rate_limiter=limiter)
        async with limiter, client:
            batches: list[ka.DetailBatch] = []
            with pytest.raises(RateLimiterUnavailableError):
                async with aclosing(client.iter_detail_batches(ids)) as stream:
                    async for batch in stream:
                        batches.append(batch)
                        if len(batches) == 3:
                            redis_proc.terminate()  # Redis goes away mid-crawl
                            redis_proc.wait(timeout=10)
    ok = [b for b in batches if b.error is None and b.sent]
    failed = [b for b in batches if b.error is not None or not b.sent]
    assert len(ok) >= 3 and failed
    assert all(isinstance(b.error, RateLimiterUnavailableError) or not b.sent for b in failed)
    # Only requests that got a permit were sent: the server saw exactly the good batches.
    assert server.stats().requests == len(ok)
    seen = Counter(i for b in batches for i in b.ids)
    assert max(seen.values()) == 1  # no id reported twice
    assert set(seen) <= set(ids)  # the rest were never attempted: a resume picks them up
    for b in ok:
        assert {v.video_id for v in b.videos} | set(b.missing) == set(b.ids)


# -- sharing one key's budget ------------------------------------------------------------


def assert_one_schedule(slots: list[int], qps: float, requests: int) -> None:
    """The slots came from one budget: every request drew one, and any two are at least
    1/qps apart whoever took them (Redis-clock arithmetic, not timing). Two budgets
    starting together would hand out their first slots microseconds apart."""
    distinct = sorted(set(slots))  # a confirmed slot is logged twice
    assert len(distinct) >= requests
    gaps = [b - a for a, b in itertools.pairwise(distinct)]
    assert min(gaps) >= math.floor(1_000_000 / qps)


async def test_two_clients_in_one_process_share_the_budget(make_limiter: MakeLimiter) -> None:
    qps = 10
    name = f"shared-{uuid.uuid4().hex}"
    logs: list[list[int]] = []  # each client's slots
    async with FakeKeyAPI({API_KEY: None}, qps=qps) as server:
        ids = server.make_ids(200)

        async def crawl(shard: list[str]) -> list[ka.DetailBatch]:
            limiter = make_limiter(qps, name=name)
            logs.append(record_slots(limiter))
            client = ka.KeyAPIClient(API_KEY, base_url=server.url, rate_limiter=limiter)
            async with client, aclosing(client.iter_detail_batches(shard)) as stream:
                return [b async for b in stream]

        done = await asyncio.gather(crawl(ids[:100]), crawl(ids[100:]))
        requests = server.stats(API_KEY).requests
    # Outcome only (how many 429s a loaded machine provokes is the benchmark's business):
    # no batch failed, and every id came back fetched or missing exactly once.
    batches = [b for shard in done for b in shard]
    assert all(b.error is None and b.sent for b in batches)
    outcome = Counter([*(v.video_id for b in batches for v in b.videos),
                       *(i for b in batches for i in b.missing)])
    assert outcome == Counter(ids)
    assert_one_schedule([slot for log in logs for slot in log], qps, requests)


def test_four_worker_processes_share_one_budget(redis_url: str) -> None:
    qps, workers, n_ids = 20, 4, 400
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.redis_workers",
            "--check",
            "--redis-url",
            redis_url,
            "--workers",
            str(workers),
            "--qps",
            str(qps),
            "--ids",
            str(n_ids),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = msgspec.json.decode(proc.stdout.strip().splitlines()[-1])
    stats, shards = run["stats"], run["shards"]
    assert len(shards) == workers
    # Outcome only: nothing raised, no id failed (429s retried are the benchmark's figure).
    assert all(s["fatal"] is None and not s["failed"] for s in shards)
    # Shards partition the ids file, and every id is fetched or missing exactly once.
    assignment = Counter(i for s in shards for i in s["ids"])
    assert set(assignment) == set(run["ids"]) and max(assignment.values()) == 1
    outcome = Counter(i for s in shards for i in s["fetched"] + s["missing"])
    assert outcome == Counter(run["ids"])
    assert all(s["ids"] and s["slots"] for s in shards)  # every worker had work and drew
    assert stats["requests"] == sum(s["requests"] for s in shards)
    assert_one_schedule([t for s in shards for t in s["slots"]], qps, stats["requests"])


# -- sharding ------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [("1/1", (1, 1)), ("2/4", (2, 4)), ("4/4", (4, 4))])
def test_parse_shard(spec: str, expected: tuple[int, int]) -> None:
    assert parse_shard(spec) == expected


@pytest.mark.parametrize("spec", ["0/4", "5/4", "1/0", "1", "a/b", "1/4/2", "", "-1/4"])
def test_parse_shard_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="I/N"):
        parse_shard(spec)


def test_shards_partition_the_ids_stably() -> None:
    ids = [str(7_000_000_000_000_000_000 + i) for i in range(4000)]
    shards = [list(shard_filter(ids, i, 4)) for i in range(1, 5)]
    assert sorted(i for s in shards for i in s) == sorted(ids)
    assert all(800 < len(s) < 1200 for s in shards)  # a hash, not a range split
    # Order- and host-independent: the shard of an id depends on the id alone.
    assert list(shard_filter(reversed(ids), 3, 4)) == shards[2][::-1]
    assert list(shard_filter([int(i) for i in shards[1][:5]], 2, 4)) == [
        int(i) for i in shards[1][:5]
    ]
    # Duplicates land together, so each shard's own dedupe still sends an id once.
    assert sorted(len(list(shard_filter([ids[0]] * 2, i, 4))) for i in range(1, 5)) == [0, 0, 0, 2]
    with pytest.raises(ValueError):
        list(shard_filter(ids, 0, 4))


def test_budget_name_is_per_key_and_hides_the_key() -> None:
    name = budget_name(API_KEY)
    assert name == budget_name(f"  {API_KEY}\n") != budget_name(API_KEY + "x")
    assert API_KEY not in name and "LEAKCANARY" not in name
    assert len(name) == len("key-") + 16


async def test_hundreds_of_waiting_tasks_do_not_exhaust_the_connection_pool(
    make_limiter: MakeLimiter,
) -> None:
    # Found by the benchmarks: a crawl at qps 50 keeps ~100 tasks waiting for a permit;
    # one Redis call each at once ran redis-py's pool (100 connections) dry.
    limiter = make_limiter(5000)
    start, _ = await limiter.reserve()
    await asyncio.gather(*(limiter.acquire() for _ in range(250)))  # none may fail
    end, _ = await limiter.reserve()
    assert end - start >= 251 * limiter.interval_us  # every acquire took its own slot
