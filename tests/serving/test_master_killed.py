"""Issue 9, row 7: a master killed with SIGKILL under load leaves no worker holding the port.

The load includes hooks waiting on a stalled FHIR server, so the orphaned workers still have
work in hand when their master dies: they must give up the port at once (and finish that work),
so that a restart made straight away binds it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.held_fhir import held_fhir
from tests.support.served import hook_body, post_hook, process_exists, serve

pytestmark = pytest.mark.slow  # two served instances, one killed on purpose

EXIT_WAIT_SECONDS = 60.0  # generous: the machine is shared; workers exit within a second or two


def keep_calling(url: str, stop: threading.Event) -> None:
    """Health checks back to back until `stop` (errors are expected once the master is gone)."""
    with requests.Session() as session:
        while not stop.is_set():
            try:
                session.get(url, timeout=2)
            except requests.RequestException:
                time.sleep(0.01)


def wait_until_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still running after `timeout` seconds (empty once all have exited)."""
    ends = time.monotonic() + timeout
    running = list(pids)
    while running and time.monotonic() < ends:
        running = [pid for pid in running if process_exists(pid)]
        time.sleep(0.1)
    return running


def test_a_restart_binds_the_port_at_once_after_the_master_is_killed_under_load(
    tmp_path: Path,
) -> None:
    stop = threading.Event()
    fhir_limits = {"timeout_seconds": 120, "deadline_seconds": 120}
    with held_fhir() as fhir, ThreadPoolExecutor(2) as hook_callers:
        first_settings = {"workers": 2, "fhir": fhir_limits, "fhir_servers": [fhir.base_url]}
        with serve(tmp_path / "first", **first_settings) as first:
            workers = first.wait_for_workers(2)
            fhir.hold()
            stalled = [
                hook_callers.submit(post_hook, first, hook_body(fhir.base_url)) for _ in range(2)
            ]
            assert fhir.wait_for(2)
            load = [
                threading.Thread(target=keep_calling, args=(f"{first.base_url}/healthz", stop))
                for _ in range(4)
            ]
            for thread in load:
                thread.start()
            try:
                time.sleep(0.3)
                os.kill(first.process.pid, signal.SIGKILL)
                first.process.wait(timeout=10)
                with serve(tmp_path / "second", port=first.port, workers=2) as second:
                    answer = requests.get(f"{second.base_url}/healthz", timeout=10)
                    fhir.release()
                    left = wait_until_gone(workers, EXIT_WAIT_SECONDS)
            finally:
                stop.set()
                fhir.release()
                for thread in load:
                    thread.join(timeout=30)
            finished = [future.result(timeout=120) for future in stalled]

    assert len(workers) == 2
    assert answer.status_code == 200
    assert left == [], "orphaned workers kept running after the master was killed"
    assert [reply.status_code for reply in finished] == [200, 200], "in-flight hooks completed"
