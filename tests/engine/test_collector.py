"""The collector paused around loads: nested and concurrent pauses, and what was before."""

from __future__ import annotations

import gc
import threading

from ostinato.daemon.engine.collector import collector_paused


def test_the_collector_runs_again_only_when_the_last_pause_ends() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_a_pause_in_another_thread_keeps_it_paused_past_this_one() -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert inside.wait(5)
        with collector_paused():
            pass
        assert not gc.isenabled()  # the other thread's pause is not over
    finally:
        release.set()
        thread.join(5)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
