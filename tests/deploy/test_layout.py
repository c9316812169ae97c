"""The deployment layouts, checked structurally (no container engine runs here).

compose.yaml: two replicas of one image sharing PostgreSQL behind a TLS proxy; Kubernetes: a
Deployment probing /healthz (database included) and /livez, a Service, secrets by reference.
Each settings file in them loads into the real Settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_service.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SECRET_VARIABLES = {"PICU_ENDOTYPE_DATABASE_URL", "PICU_ENDOTYPE_AUDIT__PSEUDONYM_KEY"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    loaded = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            loaded[document["kind"]] = document
    return loaded


def _replicas(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == "picu-endotype:local" and "command" not in service
    }


def test_compose_runs_two_replicas_of_one_image_on_one_postgresql(compose: dict[str, Any]):
    replicas = _replicas(compose)

    assert sorted(replicas) == ["cds-a", "cds-b"]
    assert compose["services"]["db"]["image"].startswith("postgres:")
    for service in replicas.values():
        url = service["environment"]["PICU_ENDOTYPE_DATABASE_URL"]
        assert url.startswith("postgresql://") and "@db:5432/" in url
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["environment"]["PICU_ENDOTYPE_MIGRATE_ON_START"] == "false"


def test_compose_takes_every_secret_from_the_environment(compose: dict[str, Any]):
    for service in _replicas(compose).values():
        environment = service["environment"]
        assert set(environment) >= SECRET_VARIABLES
        for name in SECRET_VARIABLES:
            assert re.search(r"\$\{[A-Z_]+:\?", environment[name]), name


def test_compose_migrates_once_before_the_replicas_start(compose: dict[str, Any]):
    migrate = compose["services"]["migrate"]

    assert migrate["command"] == ["picu-endotype", "db", "upgrade"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"


def test_the_proxy_terminates_tls_and_balances_both_replicas(compose: dict[str, Any]):
    proxy = compose["services"]["proxy"]
    config = (ROOT / "deploy" / "compose" / "nginx.conf").read_text()

    assert proxy["ports"] == ["443:443"]
    assert "listen 443 ssl" in config
    assert set(re.findall(r"server (cds-[ab]):8080", config)) == set(_replicas(compose))
    assert "location = /metrics { return 404; }" in config
    assert "$request_uri" not in config and "$http_authorization" not in config


def test_the_proxy_stops_slow_clients_and_the_replicas_run_under_an_init(
    compose: dict[str, Any],
):
    config = (ROOT / "deploy" / "compose" / "nginx.conf").read_text()

    for directive in ("client_header_timeout", "client_body_timeout", "limit_conn per_address"):
        assert directive in config
    assert "proxy_request_buffering on" in config
    assert all(compose["services"][name].get("init") is True for name in _replicas(compose))


def test_the_compose_settings_example_is_valid(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PICU_ENDOTYPE_DATABASE_URL", "postgresql://picu:pw@db:5432/picu")
    monkeypatch.setenv("PICU_ENDOTYPE_AUDIT__PSEUDONYM_KEY", "k" * 64)

    settings = load_settings(ROOT / "deploy" / "compose" / "settings.example.toml")

    assert settings.silent.enabled is True
    assert settings.database_url_text.startswith("postgresql://")


def test_the_deployment_has_two_replicas_and_probes_readiness_on_healthz(
    manifests: dict[str, dict[str, Any]],
):
    deployment = manifests["Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]

    assert deployment["spec"]["replicas"] >= 2
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert {port["name"] for port in container["ports"]} == {"http", "metrics"}


def test_every_secret_reference_names_a_key_of_the_secret(manifests: dict[str, dict[str, Any]]):
    secret = manifests["Secret"]
    for kind in ("Deployment", "Job"):
        [container] = manifests[kind]["spec"]["template"]["spec"]["containers"]
        references = {
            variable["name"]: variable["valueFrom"]["secretKeyRef"]
            for variable in container["env"]
            if "valueFrom" in variable
        }
        assert set(references) == SECRET_VARIABLES
        for reference in references.values():
            assert reference["name"] == secret["metadata"]["name"]
            assert reference["key"] in secret["stringData"]


def test_the_service_selects_the_deployments_pods(manifests: dict[str, dict[str, Any]]):
    service, deployment = manifests["Service"], manifests["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]

    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {
        port["name"] for port in container["ports"]
    }


def test_the_configmap_settings_are_valid(
    manifests: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = tmp_path / "settings.toml"
    config.write_text(manifests["ConfigMap"]["data"]["settings.toml"])
    monkeypatch.setenv("PICU_ENDOTYPE_DATABASE_URL", "postgresql://picu:pw@db:5432/picu")
    monkeypatch.setenv("PICU_ENDOTYPE_AUDIT__PSEUDONYM_KEY", "k" * 64)

    settings = load_settings(config)

    assert settings.metrics.port == 9464
    assert settings.public_base_url.startswith("https://")


def test_a_shared_database_without_a_pseudonym_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PICU_ENDOTYPE_DATABASE_URL", "postgresql://picu:pw@db:5432/picu")

    with pytest.raises(ValueError, match="pseudonym_key"):
        load_settings()
