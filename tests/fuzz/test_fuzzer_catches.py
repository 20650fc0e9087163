"""The protocol fuzzer's invariants can fail: each test breaks the relay in one way (a test double
patched in for the run) and requires tests/fuzz/machine.py to catch it with the matching message.

Generation only (no shrinking, no example database), so each run stops at its first failure.
"""

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from relay import delivery, messaging, session_rows, sessions
from relay.consumers import RelayConsumer
from tests.fuzz import machine
from tests.relay import flows

pytestmark = flows.RELAY_DB

CATCH = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    report_multiple_bugs=False,
)


def _fuzz_fails(*needles: str) -> str:
    with pytest.raises(Exception) as caught:
        run_state_machine_as_test(machine.RelayMachine, settings=CATCH)
    text = str(caught.value)
    assert any(n in text for n in needles), f"the fuzzer failed, but not on {needles}: {text[:2000]}"
    return text


def test_a_frame_to_a_user_who_does_not_own_the_device(monkeypatch):
    """Every app joins one group and writes every event: robot events reach other users' apps."""
    monkeypatch.setattr(delivery, "owner_group", lambda user_id: "owner.everyone.apps")

    async def relay_event(self, message):
        await self._relay_text(message)

    monkeypatch.setattr(RelayConsumer, "relay_event", relay_event)
    _fuzz_fails("got a frame of D", "'s frame reached")


def test_an_internal_error(monkeypatch):
    """Commands and pass-through frames raise inside the handler: the sender gets INTERNAL."""

    async def command(party, frame, kind):
        raise ZeroDivisionError("test double")

    monkeypatch.setattr(messaging, "command", command)
    _fuzz_fails("got an INTERNAL error")


def test_a_session_closed_twice(monkeypatch):
    """Every session end is announced twice: parties get a second `webrtc_close`."""
    announce = sessions.announce_end

    async def twice(*args, **kwargs):
        await announce(*args, **kwargs)
        await announce(*args, **kwargs)

    monkeypatch.setattr(sessions, "announce_end", twice)
    # Depending on the example, the second announcement shows as a second close at a party or as a close
    # at a socket the model no longer counts as a party (the first one ended its part): both are caught.
    _fuzz_fails("got a second webrtc_close", "twice: {", "for a session it is no party of")


def test_a_history_row_with_another_end_reason(monkeypatch):
    """Session rows record every end as `setup_timeout`, whatever ended them."""
    end = session_rows.session_end

    def wrong_reason(*, session_id, reason, unless_answered=False):
        return end(session_id=session_id, reason="setup_timeout", unless_answered=unless_answered)

    monkeypatch.setattr(session_rows, "session_end", wrong_reason)
    _fuzz_fails("session c", "row {")


def test_a_socket_that_stops_answering_ping(monkeypatch):
    """A socket wedges after its first frame other than `ping`: it never answers `ping` again."""
    monkeypatch.setattr(machine, "RECV_TIMEOUT", 1.0)
    receive = RelayConsumer.receive

    async def wedging(self, text_data=None, bytes_data=None):
        if text_data != '{"type":"ping"}':
            self.wedged = True
        if getattr(self, "wedged", False):
            return
        await receive(self, text_data, bytes_data)

    monkeypatch.setattr(RelayConsumer, "receive", wedging)
    # Usually seen at the next ping; when the example's last step waits for a setup timer instead, the
    # wedged socket shows as that timer's close not arriving. Either is the fuzzer catching it.
    _fuzz_fails("did not answer ping", "did not arrive")
