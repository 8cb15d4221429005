"""Riding through a database outage, with fakes: which failures are replayed, how long a call
waits, and how a commit whose answer was lost is resolved."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from driver.domain.errors import StorageUnavailable
from driver.storage import outage, store
from driver.storage.locking import DEADLINE
from driver.storage.outage import CommitOutcome, Interrupted, interrupts, resolve_commit
from driver.storage.store import Conflict, Store, retrying

STARTED = "2026-12-01 09:00:00.123456+00"


class DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def failure(
    sqlstate: str | None, kind: type[DBAPIError] = OperationalError, message: str = "boom"
) -> DBAPIError:
    return kind("COMMIT", {}, DriverError(message, sqlstate))


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch):
    monkeypatch.setattr(outage, "PAUSE_MIN", 0.001)
    monkeypatch.setattr(outage, "PAUSE_MAX", 0.002)


@contextmanager
def deadline_in(seconds: float):
    token = DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        DEADLINE.reset(token)


@pytest.mark.parametrize(
    ("sqlstate", "why"),
    [
        ("57P01", "terminating connection due to administrator command"),
        ("57P02", "terminating connection because of crash of another server process"),
        ("57P03", "the database system is starting up"),
        ("25006", "cannot execute INSERT in a read-only transaction"),
        ("08006", "server closed the connection unexpectedly"),
        (None, "connection refused"),
    ],
)
def test_a_server_going_away_or_a_standby_interrupts_a_transaction(sqlstate, why):
    assert interrupts(failure(sqlstate, message=why))


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [
        ("40001", OperationalError),  # a conflict: retried as such, a few times
        ("23505", IntegrityError),
        ("57014", OperationalError),  # statement_timeout: the call's bound is spent
        ("55P03", OperationalError),  # lock_timeout
        ("42P01", ProgrammingError),  # a missing table: no amount of waiting helps
        ("28P01", OperationalError),  # a wrong password neither
        (None, ProgrammingError),
    ],
)
def test_a_wrong_statement_a_conflict_or_a_spent_bound_does_not(sqlstate, kind):
    assert not interrupts(failure(sqlstate, kind))


def flaky(outcomes: list[object]):
    """A use case that raises or returns each of ``outcomes`` in turn."""
    calls = []

    @retrying
    def use_case() -> object:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return use_case, calls


def test_an_interrupted_use_case_is_replayed_until_the_database_answers():
    use_case, calls = flaky([Interrupted("database unavailable: gone")] * 3 + ["done"])
    with deadline_in(5):
        assert use_case() == "done"
    assert len(calls) == 4


def test_a_database_away_past_the_deadline_is_a_503_naming_why():
    use_case, calls = flaky([Interrupted("database unavailable: connection refused")] * 10_000)
    with deadline_in(0.05), pytest.raises(StorageUnavailable) as raised:
        use_case()
    assert not isinstance(raised.value, Interrupted), "not replayed again by an outer use case"
    assert raised.value.message == (
        "database unavailable: connection refused; the database stayed unavailable until "
        "the call's time ran out"
    )
    assert 1 < len(calls) < 10_000


def test_a_call_without_a_deadline_rides_through_an_outage_for_its_stores_bound():
    gone = Interrupted("database unavailable: gone", bound=0.05)
    use_case, _ = flaky([gone] * 3 + ["done"])
    assert use_case() == "done"  # no call deadline: an operator command
    endless, calls = flaky([gone] * 10_000)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="stayed unavailable"):
        endless()
    assert 1 < len(calls) < 10_000
    assert time.monotonic() - started < 5, "it gave up after its bound, not the default 30 s"


def test_an_operator_command_waits_up_to_half_a_minute_by_default():
    assert Interrupted("database unavailable: gone").bound == outage.OUTAGE_BOUND == 30


def test_conflicts_are_still_retried_a_few_times_only():
    use_case, calls = flaky([Conflict("could not serialize access")] * 10)
    with deadline_in(5), pytest.raises(StorageUnavailable, match="database busy: 5 attempts"):
        use_case()
    assert len(calls) == 5


class FakeEngine:
    """Answers txid_status questions from a script: a row, or an error to raise."""

    def __init__(self, answers: list[object]) -> None:
        self.answers = answers
        self.asked = 0

    @contextmanager
    def connect(self):
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        if isinstance(answer, Exception):
            raise answer
        yield FakeConnection(answer)


class FakeConnection:
    def __init__(self, row: object) -> None:
        self.row = row

    def execute(self, _statement, _params):
        return self

    def one(self):
        return self.row


def resolve(answers: list[object], seconds: float = 5) -> tuple[str, int]:
    engine = FakeEngine(answers)
    with deadline_in(seconds):
        made = resolve_commit(engine, CommitOutcome(731, STARTED, sent=True), "connection lost")
    return made, engine.asked


def test_a_commit_the_server_that_ran_it_says_committed_stands():
    assert resolve([(STARTED, "committed")]) == ("committed", 1)


def test_an_aborted_commit_is_replayed():
    assert resolve([(STARTED, "aborted")]) == ("aborted", 1)


def test_a_commit_in_progress_is_asked_about_again_until_it_is_decided():
    assert resolve([(STARTED, "in progress")] * 3 + [(STARTED, "committed")]) == ("committed", 4)


def test_while_the_server_is_away_the_question_waits_for_it():
    refused = failure(None, message="connection refused")
    assert resolve([refused, refused, (STARTED, "committed")]) == ("committed", 3)


def test_on_a_restarted_or_promoted_server_the_answer_is_not_trusted_and_the_call_replayed():
    # a transaction id the log never kept may be given to another transaction there
    later = "2026-12-01 09:05:00.654321+00"
    assert resolve([(later, "committed")]) == ("elsewhere", 1)


def test_an_id_in_the_future_on_a_promoted_standby_is_replayed():
    future = failure("22023", ProgrammingError, "transaction ID 731 is in the future")
    assert resolve([future]) == ("elsewhere", 1)


def test_a_commit_still_unknown_at_the_deadline_is_a_503_never_a_success():
    with pytest.raises(StorageUnavailable) as raised:
        resolve([(STARTED, "in progress")], seconds=0.05)
    assert raised.value.message == (
        "database unavailable: connection lost, at commit; whether the commit was made "
        "could not be learnt; the database stayed unavailable until the call's time ran out"
    )


class FakeTransactionEngine:
    """A PostgreSQL engine whose first COMMIT loses its connection."""

    class dialect:
        name = "postgresql"

    def __init__(self) -> None:
        self.commits = 0
        self.disposed = 0

    def connect(self):
        return FakeSession(self)

    def dispose(self) -> None:
        self.disposed += 1


class FakeSession:
    def __init__(self, engine: FakeTransactionEngine) -> None:
        self.engine = engine
        self.invalidated = False

    @contextmanager
    def begin(self):
        yield
        self.engine.commits += 1
        if self.engine.commits == 1:
            raise failure("08006", message="server closed the connection unexpectedly")

    def invalidate(self) -> None:
        self.invalidated = True

    def close(self) -> None:
        pass


@pytest.fixture
def fake_store(monkeypatch) -> tuple[Store, FakeTransactionEngine]:
    monkeypatch.setattr(store.event, "listen", lambda *_: None)
    monkeypatch.setattr(store.CommitOutcome, "read", classmethod(lambda cls, _c: cls(731, STARTED)))
    engine = FakeTransactionEngine()
    return Store(engine), engine  # type: ignore[arg-type]


def lease_use_case(store_: Store):
    bodies: list[str] = []

    @retrying
    def request_address() -> str:
        with store_.transaction():
            answer = f"192.0.2.{len(bodies) + 1}"  # computed inside the transaction
            bodies.append(answer)
        return answer

    return request_address, bodies


def test_a_lost_commit_that_was_made_answers_the_result_without_a_replay(fake_store, monkeypatch):
    store_, engine = fake_store
    monkeypatch.setattr(store, "resolve_commit", lambda *_: "committed")
    request_address, bodies = lease_use_case(store_)
    with deadline_in(5):
        assert request_address() == "192.0.2.1"
    assert bodies == ["192.0.2.1"]
    assert engine.disposed == 1, "the pooled connections were dropped"


def test_a_lost_commit_that_was_not_made_is_replayed_whole(fake_store, monkeypatch):
    store_, engine = fake_store
    monkeypatch.setattr(store, "resolve_commit", lambda *_: "aborted")
    request_address, bodies = lease_use_case(store_)
    with deadline_in(5):
        assert request_address() == "192.0.2.2"
    assert bodies == ["192.0.2.1", "192.0.2.2"]
    assert engine.commits == 2


def test_a_replay_after_a_commit_that_may_have_been_made_knows_when_the_first_attempt_began():
    began = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    seen = []

    @retrying
    def release() -> str:
        seen.append(outage.REPLAYED_SINCE.get())
        if len(seen) == 1:
            raise Interrupted("database unavailable: gone", unsure_since=began)
        assert outage.made_since_replayed(began + timedelta(seconds=1))
        assert not outage.made_since_replayed(began - timedelta(seconds=1))
        return "released"

    with deadline_in(5):
        assert release() == "released"
    assert seen == [None, began]
    assert outage.REPLAYED_SINCE.get() is None, "only for that call"
    assert not outage.made_since_replayed(began + timedelta(seconds=1))
