"""Two `serve` instances sharing one PostgreSQL database, as replicas behind a load balancer.

A JWT accepted by one is refused by the other; feedback posted to either shows in one report;
killing one instance with SIGKILL under load loses no acknowledged feedback or audit record; and
each instance's metrics aggregate its two workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from cds_service.cli import main
from cds_service.discovery import SERVICE_ID
from cds_service.storage import Database
from cds_service.storage.schema import audit_record, feedback
from devtools.ehr import DemoEhr, build_prefetch, hook_request
from devtools.sandbox_fhir import LOOPBACK, SandboxFhir, free_port
from devtools.sandbox_postgres import PostgresServer
from devtools.service import serve_command, service_config_toml, stop_process, wait_for_health

pytestmark = pytest.mark.slow  # a PostgreSQL server and two `serve` instances

PUBLIC_BASE_URL = "https://cds.replicas.test"  # what the load balancer's clients call
HOOK_AUDIENCE = f"{PUBLIC_BASE_URL}/cds-services/{SERVICE_ID}"
FEEDBACK_AUDIENCE = f"{HOOK_AUDIENCE}/feedback"
PSEUDONYM_KEY = "replica-shared-pseudonym-key"
LOAD_SECONDS = 20.0
MAX_HOOKS_FOR_BOTH_WORKERS = 200  # fresh connections before giving up on the second worker


@dataclass
class Replica:
    """One running `picu-endotype serve` instance."""

    process: subprocess.Popen[bytes]
    url: str
    metrics_url: str
    metrics_dir: Path
    log_path: Path

    def kill(self) -> None:
        """SIGKILL the master and its workers at once, as a crashed host would lose them."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@dataclass
class Cluster:
    ehr: DemoEhr
    database_url: str
    replicas: list[Replica]
    prefetch: dict[str, Any]
    patient_id: str
    fhir_base: str
    stopped: list[Replica] = field(default_factory=list)


def _config(
    workdir: Path, port: int, metrics_port: int, ehr: DemoEhr, fhir_base: str, url: str
) -> Path:
    text = json.dumps
    body = service_config_toml(
        public_base_url=PUBLIC_BASE_URL,
        port=port,
        state_dir=workdir / "var",
        ehr=ehr,
        fhir_base=fhir_base,
    )
    config = workdir / "settings.toml"
    config.write_text(
        f"database_url = {text(url)}\n"
        + body
        + f"\n[audit]\npseudonym_key = {text(PSEUDONYM_KEY)}\n"
        + f"\n[metrics]\nport = {metrics_port}\n"
    )
    return config


def _start(workdir: Path, ehr: DemoEhr, fhir_base: str, database_url: str) -> Replica:
    workdir.mkdir(parents=True)
    port, metrics_port = free_port(), free_port()
    config = _config(workdir, port, metrics_port, ehr, fhir_base, database_url)
    log_path, metrics_dir = workdir / "service.log", workdir / "metrics"
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            serve_command(config),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=environment,
            start_new_session=True,
        )
    url = f"http://{LOOPBACK}:{port}"
    replica = Replica(
        process, url, f"http://{LOOPBACK}:{metrics_port}/metrics", metrics_dir, log_path
    )
    try:
        wait_for_health(process, f"{url}/healthz", log_path)
    except RuntimeError:
        stop_process(process)
        raise
    return replica


@pytest.fixture(scope="module")
def cluster(
    postgres_server: PostgresServer,
    sandbox_fhir: SandboxFhir,
    scenario_patients: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("replicas")
    database_url = postgres_server.create_database("replicas")
    ehr = DemoEhr()
    replicas = [_start(workdir / name, ehr, sandbox_fhir.base_url, database_url) for name in "ab"]
    patient_id = scenario_patients["hyperinflammatory"]
    with requests.Session() as session:
        url = f"{replicas[0].url}/cds-services"
        services = session.get(
            url,
            headers={"Authorization": f"Bearer {ehr.token(f'{PUBLIC_BASE_URL}/cds-services')}"},
            timeout=30,
        ).json()
    templates = services["services"][0]["prefetch"]
    prefetch = build_prefetch(sandbox_fhir.base_url, templates, {"patientId": patient_id})
    built = Cluster(ehr, database_url, replicas, prefetch, patient_id, sandbox_fhir.base_url)
    yield built
    for replica in replicas:
        if replica.process.poll() is None:
            os.killpg(replica.process.pid, signal.SIGTERM)
            replica.process.wait(timeout=30)


def _hook(
    cluster: Cluster, replica: Replica, token: str, session: requests.Session
) -> requests.Response:
    body = hook_request(cluster.patient_id, cluster.fhir_base, prefetch=cluster.prefetch)
    return session.post(
        f"{replica.url}/cds-services/{SERVICE_ID}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _feedback(
    cluster: Cluster, replica: Replica, card: str, outcome: str, session: requests.Session
) -> requests.Response:
    item: dict[str, Any] = {
        "card": card,
        "outcome": outcome,
        "outcomeTimestamp": "2026-01-01T00:00:00Z",
    }
    if outcome == "overridden":
        item["overrideReason"] = {
            "reason": {"system": "https://example.org/reasons", "code": "not-relevant"}
        }
    else:
        item["acceptedSuggestions"] = [{"id": str(uuid.uuid4())}]
    return session.post(
        f"{replica.url}/cds-services/{SERVICE_ID}/feedback",
        json={"feedback": [item]},
        headers={"Authorization": f"Bearer {cluster.ehr.token(FEEDBACK_AUDIENCE)}"},
        timeout=30,
    )


def _rows(database_url: str, table: Any) -> list[dict[str, Any]]:
    database = Database(database_url)
    try:
        with database.begin() as connection:
            return [dict(row._mapping) for row in connection.execute(select(table))]
    finally:
        database.close()


def test_a_jwt_accepted_by_one_replica_is_refused_by_the_other(cluster: Cluster):
    first, second = cluster.replicas
    token = cluster.ehr.token(HOOK_AUDIENCE)
    with requests.Session() as session:
        accepted = _hook(cluster, first, token, session)
        replayed = _hook(cluster, second, token, session)

    assert accepted.status_code == 200
    assert replayed.status_code == 401


def test_feedback_posted_to_either_replica_shows_in_one_report(
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
):
    first, second = cluster.replicas
    with requests.Session() as session:
        card_a = _hook(cluster, first, cluster.ehr.token(HOOK_AUDIENCE), session).json()["cards"][
            0
        ]["uuid"]
        card_b = _hook(cluster, second, cluster.ehr.token(HOOK_AUDIENCE), session).json()["cards"][
            0
        ]["uuid"]
        assert _feedback(cluster, second, card_a, "overridden", session).status_code == 200
        assert _feedback(cluster, first, card_b, "accepted", session).status_code == 200
    monkeypatch.setenv("PICU_ENDOTYPE_DATABASE_URL", cluster.database_url)
    monkeypatch.setenv("PICU_ENDOTYPE_AUDIT__PSEUDONYM_KEY", PSEUDONYM_KEY)

    assert main(["report", "audit", "--card", card_a]) == 0
    assert "feedback: overridden" in capsys.readouterr().out
    assert (
        main(["report", "overrides", "--since", "2000-01-01", "--csv", str(tmp_path / "o.csv")])
        == 0
    )
    report = capsys.readouterr().out
    assert "overridden" in report and "accepted" in report and "not-relevant" in report


def _metric_total(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_each_replicas_metrics_aggregate_its_workers(cluster: Cluster):
    replica = cluster.replicas[1]
    before = _metric_total(
        requests.get(replica.metrics_url, timeout=10).text, "picu_endotype_hooks_total"
    )
    sent = answered = 0
    with requests.Session() as session:
        # a new connection each time; which worker accepts it is the kernel's choice, and one
        # worker may take many in a row, so go on until both have written samples
        while sent < 12 or (_counter_files(replica) < 2 and sent < MAX_HOOKS_FOR_BOTH_WORKERS):
            session.close()
            reply = _hook(cluster, replica, cluster.ehr.token(HOOK_AUDIENCE), session)
            sent, answered = sent + 1, answered + (reply.status_code == 200)

    scraped = requests.get(replica.metrics_url, timeout=10).text
    assert _metric_total(scraped, "picu_endotype_hooks_total") - before == answered == sent
    assert "picu_endotype_hook_duration_seconds_bucket" in scraped
    assert _counter_files(replica) >= 2  # both workers wrote samples, summed in one scrape


def _counter_files(replica: Replica) -> int:
    """How many worker processes have written counter samples to the replica's metrics folder."""
    return len(list(replica.metrics_dir.glob("counter_*.db")))


def test_killing_a_replica_under_load_loses_no_acknowledged_record(cluster: Cluster):
    victim, survivor = cluster.replicas
    acknowledged_cards: list[str] = []
    acknowledged_feedback: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + LOAD_SECONDS

    def load(replica: Replica) -> None:
        with requests.Session() as session:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    response = _hook(cluster, replica, cluster.ehr.token(HOOK_AUDIENCE), session)
                    if response.status_code != 200:
                        continue
                    card = response.json()["cards"][0]["uuid"]
                    with lock:
                        acknowledged_cards.append(card)
                    if _feedback(cluster, replica, card, "accepted", session).status_code == 200:
                        with lock:
                            acknowledged_feedback.append(card)
                except requests.RequestException:
                    session.close()

    threads = [
        threading.Thread(target=load, args=(replica,)) for replica in (victim, victim, survivor)
    ]
    for thread in threads:
        thread.start()
    while len(acknowledged_feedback) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.kill()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    audited = {row["card_uuid"] for row in _rows(cluster.database_url, audit_record)}
    fed_back = {row["card"] for row in _rows(cluster.database_url, feedback)}
    assert len(acknowledged_feedback) >= 10
    assert set(acknowledged_cards) <= audited
    assert set(acknowledged_feedback) <= fed_back
    assert survivor.process.poll() is None
    assert requests.get(f"{survivor.url}/healthz", timeout=10).status_code == 200
