"""The two-stage stop shared by deblur-run and deblur-train (runtime/signals.py)."""

import os
import signal

import pytest

from deblur.runtime.signals import StopOnSignal


def _send(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)  # handlers run in the main thread before the next bytecode


def test_first_signal_asks_second_interrupts_and_handlers_are_restored(caplog):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with StopOnSignal("stopping after this unit") as stop:
            _send(signal.SIGTERM)
            assert stop.event.is_set() and stop.signal == signal.SIGTERM
            assert "SIGTERM: stopping after this unit (send it again to stop at once)" in caplog.text
            _send(signal.SIGINT)
            pytest.fail("the second signal should have interrupted")
    assert signal.getsignal(signal.SIGTERM) is before


def test_second_signal_is_held_back_while_not_interruptible(caplog):
    with StopOnSignal("stopping") as stop:
        stop.interruptible.clear()  # e.g. a video whose encoder thread may still write
        _send(signal.SIGINT)
        _send(signal.SIGINT)
        assert stop.event.is_set() and "already stopping at the next frame" in caplog.text
        stop.interruptible.set()
        with pytest.raises(KeyboardInterrupt):
            _send(signal.SIGINT)
