"""Rate limits: the settings' syntax, the GCRA bucket math on an injected clock, and the shared
table across processes (internal/ratelimit, docs/rate-limits.md)."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from internal.addresses import peer_address
from internal.auth.principal import Principal
from internal.config import ConfigError, Rate, RateLimits, load_settings, parse_rate
from internal.errors import RateLimited, error_details
from internal.ratelimit.limiter import Bucket, RateLimiter, headers, peer_ip
from internal.ratelimit.table import SLOTS, WINDOW, Mode, SharedTable, new_table_fd
from internal.tenancy import ProjectRef

PROJECT = "prj2345678abcd"
OTHER_PROJECT = "prj2345678abce"
KEY = Principal.api_key("key2345678abcd", ProjectRef(PROJECT, 1), frozenset())
OTHER_KEY = Principal.api_key("key2345678abce", ProjectRef(OTHER_PROJECT, 2), frozenset())
USER = Principal.user(7, "usr2345678abcd")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- settings ------------------------------------------------------------------------------------


def test_rate_limits_are_off_unless_set() -> None:
    limits = load_settings({}).rate_limits
    assert limits == RateLimits()
    assert not limits.enabled


@pytest.mark.parametrize(
    ("raw", "count", "period_s", "burst"),
    [("100/s", 100, 1.0, 100), ("6000/m", 6000, 60.0, 100), ("90/m", 90, 60.0, 2), ("10/h", 10, 3600.0, 1)],
)
def test_a_rate_reads_per_second_minute_or_hour_with_one_seconds_worth_as_its_burst(
    raw: str, count: int, period_s: float, burst: int
) -> None:
    assert parse_rate("X", raw) == Rate(count, period_s, burst)


def test_the_default_its_burst_the_peer_rate_and_project_overrides_are_read() -> None:
    limits = load_settings(
        {
            "ALTALUNE_RATE_LIMIT": "100/s",
            "ALTALUNE_RATE_LIMIT_BURST": "250",
            "ALTALUNE_RATE_LIMIT_PROJECTS": f" {PROJECT}=500/s:50 , {OTHER_PROJECT}=off",
        }
    ).rate_limits

    assert limits.default == Rate(100, 1.0, 250)
    assert limits.peer == limits.default  # the peer limit follows the default unless set
    assert dict(limits.projects) == {PROJECT: Rate(500, 1.0, 50), OTHER_PROJECT: None}
    assert load_settings({"ALTALUNE_RATE_LIMIT_PEER": "5/s:20"}).rate_limits == RateLimits(peer=Rate(5, 1.0, 20))
    assert load_settings({"ALTALUNE_RATE_LIMIT_PROJECTS": f"{PROJECT}=1/s"}).rate_limits.enabled


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ALTALUNE_RATE_LIMIT": "100"}, "ALTALUNE_RATE_LIMIT"),
        ({"ALTALUNE_RATE_LIMIT": "100/d"}, "ALTALUNE_RATE_LIMIT"),
        ({"ALTALUNE_RATE_LIMIT": "0/s"}, "ALTALUNE_RATE_LIMIT"),
        ({"ALTALUNE_RATE_LIMIT": "-5/s"}, "ALTALUNE_RATE_LIMIT"),
        ({"ALTALUNE_RATE_LIMIT": "100/s:20"}, "ALTALUNE_RATE_LIMIT"),  # its burst has its own variable
        ({"ALTALUNE_RATE_LIMIT": "100/s", "ALTALUNE_RATE_LIMIT_BURST": "0"}, "ALTALUNE_RATE_LIMIT_BURST"),
        ({"ALTALUNE_RATE_LIMIT": "100/s", "ALTALUNE_RATE_LIMIT_BURST": "x"}, "ALTALUNE_RATE_LIMIT_BURST"),
        ({"ALTALUNE_RATE_LIMIT_BURST": "10"}, "ALTALUNE_RATE_LIMIT_BURST"),
        ({"ALTALUNE_RATE_LIMIT_PEER": "fast"}, "ALTALUNE_RATE_LIMIT_PEER"),
        ({"ALTALUNE_RATE_LIMIT_PROJECTS": "prj_abc=500/s"}, "ALTALUNE_RATE_LIMIT_PROJECTS"),
        ({"ALTALUNE_RATE_LIMIT_PROJECTS": f"{PROJECT}"}, "ALTALUNE_RATE_LIMIT_PROJECTS"),
        ({"ALTALUNE_RATE_LIMIT_PROJECTS": f"{PROJECT}=5/x"}, "ALTALUNE_RATE_LIMIT_PROJECTS"),
        ({"ALTALUNE_RATE_LIMIT_PROJECTS": f"{PROJECT}=1/s,{PROJECT}=2/s"}, "ALTALUNE_RATE_LIMIT_PROJECTS"),
    ],
)
def test_a_bad_rate_setting_is_rejected_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


# --- buckets and GCRA ----------------------------------------------------------------------------


def _limiter(clock: Clock, **env: str) -> RateLimiter:
    return RateLimiter(load_settings(env).rate_limits, SharedTable.private(), clock=clock)


def test_a_full_bucket_allows_the_burst_then_one_call_per_interval() -> None:
    clock = Clock()
    limiter = _limiter(clock, ALTALUNE_RATE_LIMIT="10/s", ALTALUNE_RATE_LIMIT_BURST="3")
    bucket = limiter.credential_bucket(KEY, None)
    assert bucket is not None

    decisions = [limiter.take(bucket) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[2].wait_s == pytest.approx(0.1)
    assert decisions[3].wait_s == pytest.approx(0.1)  # the real wait until a token is back

    clock.now += 0.05
    refused = limiter.take(bucket)
    assert not refused.allowed
    assert refused.wait_s == pytest.approx(0.05)
    clock.now += 0.05
    assert limiter.take(bucket).allowed
    assert not limiter.take(bucket).allowed

    clock.now += 10  # refilled, but never beyond the burst
    assert [limiter.take(bucket).allowed for _ in range(4)] == [True, True, True, False]

    error = limiter.refused(bucket, refused)
    assert isinstance(error, RateLimited)
    assert error.metadata == {"scope": "api_key", "limit": "10/s", "burst": "3"}
    retry = [d for d in error_details(error) if type(d).__name__ == "RetryInfo"]
    assert [r.retry_delay.ToTimedelta().total_seconds() for r in retry] == [pytest.approx(0.05)]  # type: ignore[union-attr]


def test_over_a_long_run_the_accepted_calls_are_the_burst_plus_the_rate() -> None:
    clock = Clock()
    limiter = _limiter(clock, ALTALUNE_RATE_LIMIT="50/s")
    bucket = limiter.credential_bucket(KEY, None)
    assert bucket is not None
    accepted = 0
    for i in range(10_001):  # a call every millisecond for 10 s
        clock.now = 1000.0 + i / 1000
        accepted += limiter.take(bucket).allowed
    assert accepted == 50 + 500


def test_api_keys_users_and_projects_get_their_own_buckets() -> None:
    clock = Clock()
    limiter = _limiter(
        clock, ALTALUNE_RATE_LIMIT="1/s", ALTALUNE_RATE_LIMIT_PROJECTS=f"{PROJECT}=2/s,{OTHER_PROJECT}=off"
    )
    key = limiter.credential_bucket(KEY, None)
    assert key is not None
    assert key.rate.text == "2/s"  # the key's project override
    assert limiter.credential_bucket(OTHER_KEY, None) is None  # its project is not limited
    user = limiter.credential_bucket(USER, None)
    in_project = limiter.credential_bucket(USER, PROJECT)
    assert user is not None
    assert in_project is not None
    assert (user.rate.text, in_project.rate.text) == ("1/s", "2/s")
    assert limiter.credential_bucket(USER, OTHER_PROJECT) is None
    # A project without an override shares the user's one bucket: spreading calls gains nothing.
    assert limiter.credential_bucket(USER, "prj2345678zzzz") == user

    assert [limiter.take(key).allowed for _ in range(3)] == [True, True, False]
    assert [limiter.take(user).allowed for _ in range(2)] == [True, False]
    assert [limiter.take(in_project).allowed for _ in range(2)] == [True, True]


def test_a_peer_is_charged_for_refusals_and_peeking_spends_nothing() -> None:
    clock = Clock()
    limiter = _limiter(clock, ALTALUNE_RATE_LIMIT="off", ALTALUNE_RATE_LIMIT_PEER="2/s:2")
    assert limiter.credential_bucket(KEY, None) is None
    peer = limiter.peer_bucket("10.0.0.7:5123")
    assert peer is not None
    assert peer == limiter.peer_bucket("10.0.0.7:6000")  # the address, not the connection
    assert peer != limiter.peer_bucket("10.0.0.8:5123")

    for _ in range(5):
        assert limiter.peek(peer).allowed
    limiter.charge(peer)
    limiter.charge(peer)
    limiter.charge(peer)  # charged beyond empty: still only empty
    refused = limiter.peek(peer)
    assert not refused.allowed
    assert refused.wait_s == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.peek(peer).allowed


def test_a_flood_of_refusals_becomes_one_event_per_bucket_per_second() -> None:
    clock = Clock()
    limiter = _limiter(clock, ALTALUNE_RATE_LIMIT="1/s")
    bucket = limiter.credential_bucket(KEY, None)
    other = limiter.credential_bucket(OTHER_KEY, None)
    assert bucket is not None
    assert other is not None
    limiter.take(bucket)
    refused = limiter.take(bucket)
    recorded = [limiter.refused(bucket, refused).record_event for _ in range(100)]
    assert recorded == [True] + [False] * 99
    assert limiter.refused(other, refused).record_event
    clock.now += 1.0
    assert limiter.refused(bucket, refused).record_event


def test_the_headers_follow_the_ietf_draft_and_retry_after_rounds_up() -> None:
    clock = Clock()
    limiter = _limiter(clock, ALTALUNE_RATE_LIMIT="2/m")
    bucket = limiter.credential_bucket(USER, None)
    assert bucket is not None
    accepted = limiter.take(bucket)
    assert headers(bucket, accepted) == {"ratelimit-policy": '"user";q=2;w=60', "ratelimit": '"user";r=0;t=30'}
    clock.now += 0.2
    refused = limiter.take(bucket)
    assert refused.wait_s == pytest.approx(29.8)
    assert headers(bucket, refused) == {
        "ratelimit-policy": '"user";q=2;w=60',
        "ratelimit": '"user";r=0;t=30',
        "retry-after": "30",
    }


@pytest.mark.parametrize(
    ("address", "ip"), [("127.0.0.1:5000", "127.0.0.1"), ("[::1]:5000", "::1"), ("::1", "::1"), ("host", "host")]
)
def test_the_peer_is_its_address_without_the_port(address: str, ip: str) -> None:
    assert peer_ip(address) == ip


# --- the shared table ----------------------------------------------------------------------------


def _take_all(fd: int, now: float, calls: int, out: multiprocessing.Queue[int]) -> None:
    table = SharedTable(fd, shared=True)
    bucket = Bucket.of("api_key", "one key", Rate(1, 3600.0, 1000))
    taken = [table.update(bucket.hashed, now, bucket.interval_s, bucket.capacity_s, Mode.TAKE)[0] for _ in range(calls)]
    out.put(sum(taken))


def test_processes_sharing_the_table_share_one_bucket_exactly() -> None:
    """4 processes take from one bucket of 1000 at the same instant: exactly 1000 succeed."""
    fd = new_table_fd()
    try:
        out: multiprocessing.Queue[int] = multiprocessing.Queue()
        context = multiprocessing.get_context("fork")
        runners = [context.Process(target=_take_all, args=(fd, 5.0, 600, out)) for _ in range(4)]
        for runner in runners:
            runner.start()
        taken = [out.get(timeout=30) for _ in runners]
        for runner in runners:
            runner.join(timeout=30)
        assert sum(taken) == 1000, taken
    finally:
        os.close(fd)


def test_a_full_window_gives_up_the_fullest_bucket_and_full_buckets_are_reused() -> None:
    table = SharedTable.private()
    # WINDOW + 1 keys landing on the same window: all but one fit; the next takes over the slot
    # closest to full (it allows early, never refuses wrongly).
    hashes = [5 + SLOTS * i for i in range(WINDOW + 1)]
    for i, hashed in enumerate(hashes[:WINDOW]):
        assert table.update(hashed, 100.0, 1.0, 1.0 + i, Mode.TAKE)[0]
        assert not table.update(hashed, 100.0, 1.0, 1.0 + i, Mode.TAKE)[0] or i > 0
    assert table.update(hashes[WINDOW], 100.0, 1.0, 1.0, Mode.TAKE)[0]
    assert table.update(hashes[0], 100.0, 1.0, 1.0, Mode.TAKE)[0]  # its slot was taken over: full again
    # Later, every bucket is full again: their slots are free for new keys.
    assert all(table.update(5 + SLOTS * (100 + i), 200.0, 1.0, 1.0, Mode.TAKE)[0] for i in range(WINDOW))


@pytest.mark.parametrize(("host", "ip"), [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("2001:db8::7", "2001:db8::7")])
def test_both_ports_name_a_peer_so_that_its_address_is_its_bucket(host: str, ip: str) -> None:
    """The HTTP port's name for a peer (peer_address) and the gRPC port's (`[::1]:5000`) give one
    address per client, whatever its source port: no bucket per connection for IPv6 callers."""
    assert peer_ip(peer_address(host, 5000)) == ip
    assert peer_ip(peer_address(host, 6001)) == ip
