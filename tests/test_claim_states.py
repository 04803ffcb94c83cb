"""A claim's life (worker/claims.py) and the recorder's expectation token, without a
database: the transitions allowed, those refused, and what each does to the connection.

The connection is a stand-in that records what it is asked to run; everything that talks
to PostgreSQL is tested with PostgreSQL elsewhere (test_crash, test_handoff, ...)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

import asyncpg
import pytest

from asyncjobs.db.sql import Queries
from asyncjobs.worker import claims
from asyncjobs.worker.attempt import RunningJob
from asyncjobs.worker.claims import Claim, ClaimConnections, ClaimState, IllegalTransition
from asyncjobs.worker.recorder import Recorder


class FakeConnection:
    """What a Claim uses of an asyncpg connection."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.closed = False
        self.listeners: list[Callable[[object], None]] = []

    def add_termination_listener(self, callback: Callable[[object], None]) -> None:
        self.listeners.append(callback)

    def remove_termination_listener(self, callback: Callable[[object], None]) -> None:
        if callback in self.listeners:
            self.listeners.remove(callback)

    def terminate(self) -> None:
        self.closed = True

    def is_closed(self) -> bool:
        return self.closed

    def is_in_transaction(self) -> bool:
        return not self.closed

    async def execute(self, sql: str) -> str:
        self.ran.append(sql)
        return ""

    def die(self) -> None:
        """The server ends the session (asyncpg then calls the listeners)."""
        self.closed = True
        for callback in list(self.listeners):
            callback(self)


class World:
    def __init__(self, *, backlog: bool = False, strict: bool = True) -> None:
        self.connections = ClaimConnections(
            "postgresql://unused", "SELECT", ["default"], 10, hold_key=("", lambda: 0)
        )
        self.connections.strict = strict
        self.connections.backlog = backlog
        self.lost: list[Claim] = []

    def claim(self) -> tuple[Claim, FakeConnection]:
        conn = FakeConnection()
        claim = Claim(cast(asyncpg.Connection, conn), self.connections, self.lost.append)
        return claim, conn

    def job(self, claim: Claim, n: int = 1) -> RunningJob:
        job = RunningJob(
            id=n,
            entry=n,
            attempt=1,
            max_attempts=3,
            task="t",
            args=[],
            kwargs={},
            timeout=None,
            queue="default",
            claim=claim,
        )
        claim.job_started(job)
        return job


@pytest.fixture
def world() -> World:
    return World()


async def running(world: World, jobs: int = 1) -> tuple[Claim, FakeConnection, list[Any]]:
    """A claim whose rows' jobs are started and launched, their start done."""
    claim, conn = world.claim()
    claim.rows_claimed()
    started = [world.job(claim, n) for n in range(jobs)]
    await claim.start_done(joined=False)
    return claim, conn, started


# -- legal lives ------------------------------------------------------------------------


async def test_a_claim_that_finds_nothing_rolls_back_and_ends(world: World) -> None:
    claim, conn = world.claim()
    assert claim.state is ClaimState.OPEN
    await claim.nothing_claimed()
    assert claim.state is ClaimState.ENDED
    assert conn.ran == ["ROLLBACK; BEGIN"]
    assert world.connections.joinable() is None


async def test_a_claim_commits_when_its_last_job_is_done(world: World) -> None:
    claim, conn, (a, b) = await running(world, 2)
    assert claim.state is ClaimState.RUNNING
    await claim.job_done(a)
    assert claim.state is ClaimState.RUNNING and conn.ran == []
    await claim.job_done(b)
    assert claim.state is ClaimState.ENDED
    assert conn.ran == ["COMMIT; BEGIN"]


async def test_a_claim_does_not_end_while_a_start_is_in_flight(world: World) -> None:
    claim, conn = world.claim()
    claim.rows_claimed()
    assert not claim.settled  # rows held, jobs not launched yet
    await claim.start_done(joined=False)  # every row stale: nothing started
    assert claim.state is ClaimState.ENDED and conn.ran == ["COMMIT; BEGIN"]


async def test_a_join_keeps_the_claim_open_until_its_start_is_done(world: World) -> None:
    claim, conn, (a,) = await running(world)
    claim.begin_join()
    assert claim.state is ClaimState.JOINING and not claim.joinable
    claim.rows_claimed()
    await claim.job_done(a)  # the join's DELETE or start still runs: the claim can't end
    assert claim.state is ClaimState.JOINING and conn.ran == []
    b = world.job(claim, 2)
    await claim.start_done(joined=True)
    assert claim.state is ClaimState.RUNNING
    await claim.job_done(b)
    assert claim.state is ClaimState.ENDED and conn.ran == ["COMMIT; BEGIN"]


async def test_a_join_that_finds_nothing_settles_the_claim(world: World) -> None:
    claim, _conn = world.claim()
    claim.rows_claimed()
    claim.begin_join()  # joined while its own start is in flight
    await claim.nothing_claimed()
    assert claim.state is ClaimState.RUNNING
    await claim.start_done(joined=False)
    assert claim.state is ClaimState.ENDED


async def test_the_first_start_finishing_late_does_not_end_a_joined_claim(world: World) -> None:
    """The join's start may be written while the first start's task still launches its
    jobs: the claim counts starts, so it ends only after both."""
    claim, conn = world.claim()
    claim.rows_claimed()
    claim.begin_join()
    claim.rows_claimed()
    await claim.start_done(joined=True)  # nothing of the join started
    assert claim.state is ClaimState.RUNNING and conn.ran == []
    a = world.job(claim)
    await claim.start_done(joined=False)
    await claim.job_done(a)
    assert conn.ran == ["COMMIT; BEGIN"]


async def test_a_young_settled_claim_parks_during_a_backlog_and_is_joined() -> None:
    world = World(backlog=True)
    claim, conn, (a,) = await running(world)
    await claim.job_done(a)
    assert claim.state is ClaimState.PARKED and conn.ran == []
    assert world.connections.parked_until() is not None
    assert world.connections.joinable() is claim
    claim.begin_join()
    await claim.end_if_parked()  # found parked earlier, joined since: left alone
    assert claim.state is ClaimState.JOINING and conn.ran == []
    await claim.nothing_claimed()
    assert claim.state is ClaimState.PARKED


async def test_parked_claims_end_when_due_or_all_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(backlog=True)
    claim, conn, (a,) = await running(world)
    await claim.job_done(a)
    await world.connections.end_parked()  # still young
    assert claim.state is ClaimState.PARKED
    await world.connections.end_parked(all_of_them=True)
    assert claim.state is ClaimState.ENDED and conn.ran == ["COMMIT; BEGIN"]
    monkeypatch.setattr(claims, "JOIN_WINDOW", 0.0)
    old, _old_conn, (b,) = await running(world)
    await old.job_done(b)
    assert old.state is ClaimState.ENDED  # too old to park


async def test_no_parking_once_the_worker_stops() -> None:
    world = World(backlog=True)
    world.connections.stop_parking()
    claim, _conn, (a,) = await running(world)
    await claim.job_done(a)
    assert claim.state is ClaimState.ENDED


async def test_a_claim_that_must_roll_back_is_not_joined_and_rolls_back() -> None:
    world = World(backlog=True)
    claim, conn, (a,) = await running(world)
    claim.must_roll_back()
    assert world.connections.joinable() is None
    await claim.job_done(a)
    assert claim.state is ClaimState.ENDED and conn.ran == ["ROLLBACK; BEGIN"]


async def test_a_handed_off_job_leaves_its_claim(world: World) -> None:
    claim, _conn, (a, b) = await running(world, 2)
    await claim.hand_off(a)
    assert a.handed_off and claim.jobs == {b}
    await claim.job_done(b)
    assert claim.state is ClaimState.ENDED


async def test_a_lost_session_interrupts_and_its_jobs_still_finish(world: World) -> None:
    claim, conn, (a,) = await running(world)
    conn.die()
    assert claim.state is ClaimState.LOST and claim.lost
    assert world.lost == [claim]
    assert world.connections.joinable() is None
    await claim.job_done(a)  # its outcome is not written; nothing to end
    assert claim.state is ClaimState.LOST and conn.ran == []


async def test_a_claim_lost_while_its_delete_runs_tells_nobody(world: World) -> None:
    claim, conn = world.claim()
    claim.give_up()
    assert claim.state is ClaimState.LOST and conn.closed
    assert world.lost == []
    conn.die()  # asyncpg's call comes later: it changes nothing
    claim.give_up()
    assert world.lost == []


async def test_jobs_launched_on_a_claim_lost_during_its_start(world: World) -> None:
    claim, conn = world.claim()
    claim.rows_claimed()
    conn.die()
    a = world.job(claim)  # launched, then stopped by the fetcher (claim.lost)
    await claim.start_done(joined=False)
    await claim.job_done(a)
    assert claim.state is ClaimState.LOST


async def test_a_failed_start_rolls_back_a_claim_with_nothing_else(world: World) -> None:
    claim, conn = world.claim()
    claim.rows_claimed()
    await claim.start_failed(joined=False)
    assert claim.state is ClaimState.ENDED and conn.ran == ["ROLLBACK; BEGIN"]
    assert world.lost == []


async def test_a_failed_start_gives_up_a_claim_with_other_jobs(world: World) -> None:
    claim, conn, (_a,) = await running(world)
    claim.begin_join()
    claim.rows_claimed()
    await claim.start_failed(joined=True)
    assert claim.state is ClaimState.LOST and conn.closed and world.lost == [claim]
    # The first claim's start failing while a join runs on its connection: given up too.
    other, other_conn = world.claim()
    other.rows_claimed()
    other.begin_join()
    await other.start_failed(joined=False)
    assert other.state is ClaimState.LOST and other_conn.closed


async def test_an_ended_claim_ignores_its_old_connection_dying(world: World) -> None:
    claim, conn, (a,) = await running(world)
    await claim.job_done(a)
    conn.die()
    assert claim.state is ClaimState.ENDED and world.lost == []


async def test_ending_a_claim_whose_session_is_gone(world: World) -> None:
    claim, conn, (a,) = await running(world)
    conn.listeners.clear()  # the server's word has not arrived yet
    conn.closed = True
    await claim.job_done(a)
    assert claim.state is ClaimState.LOST and conn.ran == [] and world.lost == []


# -- refused ----------------------------------------------------------------------------


async def test_no_job_starts_on_an_ended_claim(world: World) -> None:
    claim, _conn, (a,) = await running(world)
    await claim.job_done(a)
    with pytest.raises(IllegalTransition, match=r"job_started .* ENDED"):
        world.job(claim, 2)


async def test_no_job_starts_without_a_start_in_flight(world: World) -> None:
    claim, _conn, _ = await running(world)
    with pytest.raises(IllegalTransition, match="job_started"):
        world.job(claim, 2)


async def test_a_claim_being_joined_is_not_joined_again(world: World) -> None:
    claim, _conn, _ = await running(world)
    claim.begin_join()
    with pytest.raises(IllegalTransition, match=r"begin_join .* JOINING"):
        claim.begin_join()


@pytest.mark.parametrize("state", ["open", "ended", "lost", "doomed"])
async def test_only_running_or_parked_claims_are_joined(world: World, state: str) -> None:
    claim, conn = world.claim()
    if state != "open":
        claim.rows_claimed()
    if state == "ended":
        await claim.start_done(joined=False)
    if state == "lost":
        conn.die()
    if state == "doomed":
        claim.must_roll_back()
    with pytest.raises(IllegalTransition, match="begin_join"):
        claim.begin_join()


async def test_a_job_is_finished_once(world: World) -> None:
    claim, _conn, (a, _b) = await running(world, 2)
    await claim.job_done(a)
    with pytest.raises(IllegalTransition, match="not under it"):
        await claim.job_done(a)
    with pytest.raises(IllegalTransition, match="not under it"):
        await claim.hand_off(a)


async def test_an_ended_claim_is_not_given_up_nor_finished(world: World) -> None:
    claim, conn, (a,) = await running(world)
    await claim.job_done(a)
    with pytest.raises(IllegalTransition, match=r"give_up .* ENDED"):
        claim.give_up()
    assert conn.ran == ["COMMIT; BEGIN"] and not conn.closed  # its connection serves others
    with pytest.raises(IllegalTransition, match=r"job_done .* ENDED"):
        await claim.job_done(a)


async def test_rows_are_claimed_only_by_an_open_or_joining_claim(world: World) -> None:
    claim, _conn, _ = await running(world)
    with pytest.raises(IllegalTransition, match=r"rows_claimed .* RUNNING"):
        claim.rows_claimed()
    with pytest.raises(IllegalTransition, match=r"nothing_claimed .* RUNNING"):
        await claim.nothing_claimed()
    with pytest.raises(IllegalTransition, match=r"start_done\(joined\) .* RUNNING"):
        await claim.start_done(joined=True)


async def test_outside_tests_an_illegal_transition_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World(strict=False)
    claim, _conn = world.claim()
    claim.rows_claimed()
    claim.begin_join()
    claim.begin_join()
    assert "begin_join is not allowed in state JOINING" in caplog.text


# -- the recorder's expectation -----------------------------------------------------------


def recorder() -> Recorder:
    return Recorder("postgresql://unused", Queries.for_schema("unused"), uuid.uuid4())


async def test_an_expectation_is_given_back_once() -> None:
    rec = recorder()
    expected = rec.expect()
    assert rec._expected == 1
    expected.release()
    expected.release()
    assert rec._expected == 0


async def test_an_expectation_is_given_back_on_an_error_path() -> None:
    rec = recorder()
    with pytest.raises(OSError), rec.expect():
        assert rec._expected == 1
        raise OSError("the claim failed")
    assert rec._expected == 0


async def test_an_expectation_passed_on_stays_until_its_new_owner_is_done() -> None:
    rec = recorder()
    with rec.expect() as expected:
        passed = expected.pass_on()
    assert rec._expected == 1
    with passed:
        pass
    assert rec._expected == 0
    with pytest.raises(RuntimeError, match="used once"):
        passed.use()
