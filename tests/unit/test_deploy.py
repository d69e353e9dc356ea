"""deploy/: what can be checked here without Docker or a cluster. The compose file and the rendered
Kubernetes manifests must parse, and every command, option, environment name, port, probe and
queue they mention must be one the project really has."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from pipeline import __version__
from pipeline.cli import cli
from pipeline.config import backfill_lane
from pipeline.gateway.app import create_app
from pipeline.registry import load_pipeline
from pipeline.settings import Settings
from tests.helpers import REPO, need

DEPLOY = REPO / "deploy"
IMAGE = "media-pipeline"
SETTINGS = {f"PIPELINE_{name.upper()}" for name in Settings.model_fields}
QUEUES = set(load_pipeline(Settings()).queues())


def check_cli(argv: list[str]) -> None:
    """`argv` (after `pipeline`) names a real command and only options that command has."""
    command = cli.commands.get(argv[0])
    assert command is not None, f"no `pipeline {argv[0]}` command"
    options = {opt for param in command.params for opt in param.opts}
    for arg in argv[1:]:
        if arg.startswith("--"):
            assert arg.split("=")[0] in options, f"`pipeline {argv[0]}` has no option {arg}"


def gateway_paths() -> set[str]:
    """Every route the gateway answers (the notification routes are plain Starlette ones, outside
    the OpenAPI description)."""
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    return set(app.openapi()["paths"]) | {getattr(route, "path", "") for route in app.routes}


# --- compose ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_services_run_real_commands_with_real_settings(compose: dict[str, Any]) -> None:
    ours = {name: s for name, s in compose["services"].items() if s.get("image", "").startswith(IMAGE)}
    assert {"gateway", "worker-images", "worker-video", "worker-webhooks"} <= set(ours)
    for name, service in ours.items():
        check_cli(service["command"])
        for key in service["environment"]:
            assert key in SETTINGS, f"{name}: {key} is not a setting"
        test = service["healthcheck"]["test"]
        if test[1] == "pipeline":
            check_cli(test[2:])
    assert "/healthz" in compose["services"]["gateway"]["healthcheck"]["test"][-1]
    functions = {
        f for s in ours.values() if "--functions" in s["command"] for f in s["command"][2].split(",")
    }
    assert functions == set(load_pipeline(Settings()).functions), "every function has a worker service"


def test_compose_minio_notifies_the_gateway_with_a_token_and_a_queue_dir(compose: dict[str, Any]) -> None:
    env = compose["services"]["minio"]["environment"]
    endpoint = env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_PIPELINE"]
    assert endpoint == "http://gateway:8000/events/minio" and "/events/minio" in gateway_paths()
    assert "PIPELINE_EVENTS_TOKEN" in env["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_PIPELINE"]
    assert env["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_PIPELINE"].startswith("/data/")
    script = compose["services"]["mc"]["command"][0]
    config = load_pipeline(Settings()).config
    rule = config.rules[0]
    assert f"mc mb --ignore-existing local/{rule.bucket}" in script
    assert (
        f"mc event add local/{rule.bucket} arn:minio:sqs::PIPELINE:webhook --event put --prefix {rule.prefix}"
        in script
    )
    redis = compose["services"]["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"
    assert "--basic-auth" in compose["services"]["flower"]["command"][-1]
    assert compose["services"]["flower"]["profiles"] == ["flower"]


def test_compose_secrets_come_from_the_environment(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    for name in (
        "PIPELINE_EVENTS_TOKEN",
        "PIPELINE_API_TOKEN",
        "PIPELINE_ADMIN_PASSWORD",
        "MINIO_ROOT_PASSWORD",
    ):
        assert f"${{{name}:?" in text, f"{name} must be required from the environment, never defaulted"


# --- Kubernetes ------------------------------------------------------------------------------------
def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    need(kubectl is not None, "kubectl is not installed")
    assert kubectl is not None
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render("example")


def kinds(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_manifests_render_and_run_the_project_image_commands_and_probes(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = kinds(rendered, "Deployment")
    assert set(deployments) == {"gateway", "worker-images", "worker-video", "worker-webhooks"}
    config = kinds(rendered, "ConfigMap")
    for key in config["pipeline-config"]["data"]:
        assert key in SETTINGS, f"ConfigMap key {key} is not a setting"
    paths = gateway_paths()
    for deployment in deployments.values():
        assert deployment["metadata"]["namespace"] == "media"
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        assert container["image"] == f"registry.example.com/media-pipeline:{__version__}"  # tag = release
        check_cli(container["args"])
        assert container["resources"]["requests"] and container["resources"]["limits"]
        refs = [(kind, ref[kind]["name"]) for ref in container["envFrom"] for kind in ref]
        expected = [("configMapRef", "pipeline-config"), ("secretRef", "pipeline-secrets")]
        if deployment["metadata"]["name"] == "gateway":
            expected.append(("secretRef", "pipeline-gateway-secrets"))  # tokens: the gateway's alone
        assert refs == expected
        probe = container.get("livenessProbe", {})
        if "exec" in probe:
            assert probe["exec"]["command"][0] == "pipeline"
            check_cli(probe["exec"]["command"][1:])
        else:
            assert probe["httpGet"]["path"] in paths
            port = container["ports"][0]
            assert port["containerPort"] == Settings().gateway_port == 8000
    service = kinds(rendered, "Service")["gateway"]
    assert service["spec"]["selector"] == deployments["gateway"]["spec"]["selector"]["matchLabels"]


def mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_worker_memory_limits_fit_the_functions_memory_hints(rendered: list[dict[str, Any]]) -> None:
    """A worker container must hold `concurrency` pool processes at their memory hint, plus the
    parent process; otherwise the kernel kills it before Celery recycles a growing process."""
    config = load_pipeline(Settings()).config
    parent_mib = 256
    for name, deployment in kinds(rendered, "Deployment").items():
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        if "--functions" not in args:
            continue
        served = args[args.index("--functions") + 1].split(",")
        hint = max(config.function_settings(f).memory_mb or 0 for f in served)
        assert hint, f"{name}: the functions it serves have no memory_mb in the pipeline file"
        concurrency = int(args[args.index("--concurrency") + 1])
        limit = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        assert mebibytes(limit) >= concurrency * hint + parent_mib, f"{name}: {limit} is too small"


def test_secrets_are_referenced_never_inlined(rendered: list[dict[str, Any]]) -> None:
    assert not kinds(rendered, "Secret"), "no Secret may be rendered from the repository"
    auth = kinds(rendered, "TriggerAuthentication")["pipeline-redis"]
    assert auth["spec"]["secretTargetRef"][0]["name"] == "pipeline-secrets"


def test_every_function_queue_scales_with_keda_down_to_zero(rendered: list[dict[str, Any]]) -> None:
    deployments = kinds(rendered, "Deployment")
    scaled = kinds(rendered, "ScaledObject")
    covered: set[str] = set()
    for name, obj in scaled.items():
        target = obj["spec"]["scaleTargetRef"]["name"]
        assert target in deployments, f"{name} scales a Deployment that does not exist"
        args = deployments[target]["spec"]["template"]["spec"]["containers"][0]["args"]
        lists = {t["metadata"]["listName"] for t in obj["spec"]["triggers"]}
        if "--webhooks" in args:
            assert lists == {"webhooks"} and obj["spec"]["minReplicaCount"] >= 1
            continue
        fresh = {f"fn.{f}" for f in args[args.index("--functions") + 1].split(",")}
        served = fresh | {backfill_lane(q) for q in fresh}
        assert lists == served, f"{name} scales on {lists} but its workers serve {served}"
        assert obj["spec"]["minReplicaCount"] == 0
        covered |= lists
    assert covered == QUEUES | {backfill_lane(q) for q in QUEUES}


def test_disruption_budgets_select_real_pods(rendered: list[dict[str, Any]]) -> None:
    deployments = kinds(rendered, "Deployment")
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    budgets = kinds(rendered, "PodDisruptionBudget")
    assert set(budgets) == set(deployments)
    for budget in budgets.values():
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= label.items() for label in labels)


def test_dockerfile_is_one_slim_non_root_image_with_ffmpeg() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "-slim" in text and "ffmpeg" in text and "USER pipeline" in text
    assert 'ENTRYPOINT ["pipeline"]' in text


def test_workers_parsing_untrusted_media_run_locked_down(rendered: list[dict[str, Any]]) -> None:
    for name, deployment in kinds(rendered, "Deployment").items():
        if not name.startswith("worker-"):
            continue
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = pod["containers"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        for volume in pod["volumes"]:
            assert volume["emptyDir"]["sizeLimit"], f"{name}: {volume['name']} has no sizeLimit"
        mounted = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/tmp", "/var/lib/pipeline"} <= mounted, "a read-only root needs its scratch mounted"
    [policy] = kinds(rendered, "NetworkPolicy").values()
    selected = set(policy["spec"]["podSelector"]["matchExpressions"][0]["values"])
    assert selected == {"worker-images", "worker-video"}
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports == {6379, 443, 9000, 53}, "workers reach Redis, the store and DNS only"


def test_compose_publishes_on_loopback_guards_redis_and_keeps_tokens_from_workers(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("${PUBLISH_ADDRESS:-127.0.0.1}:"), (
                f"{name} publishes {port} beyond loopback"
            )
    assert "--requirepass" in services["redis"]["command"]
    for name, service in services.items():
        env = service.get("environment", {})
        if "PIPELINE_REDIS_URL" in env:
            assert env["PIPELINE_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD"), name
        if name.startswith("worker-"):
            assert not {"PIPELINE_API_TOKEN", "PIPELINE_ADMIN_PASSWORD", "PIPELINE_EVENTS_TOKEN"} & set(env)
            assert service["depends_on"]["secrets-checked"] == {"condition": "service_completed_successfully"}


@pytest.mark.parametrize(("secrets", "code"), [("s3cr3t t0ken", 0), ("s3cr3t change-me-api-token", 1)])
def test_compose_refuses_the_example_secrets(compose: dict[str, Any], secrets: str, code: int) -> None:
    script = compose["services"]["secrets-checked"]["command"][-1].replace("$$", "$")
    result = subprocess.run(["sh", "-c", script], env={"SECRETS": secrets}, capture_output=True, check=False)
    assert result.returncode == code


# --- monitoring ------------------------------------------------------------------------------------
def test_the_service_monitor_scrapes_the_gateway_service(rendered: list[dict[str, Any]]) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "monitoring")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    [monitor] = kinds(docs, "ServiceMonitor").values()
    service = kinds(rendered, "Service")["gateway"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items(), "the ServiceMonitor selects no Service"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and "/metrics" in gateway_paths()
    assert endpoint["authorization"]["credentials"]["key"] == "PIPELINE_METRICS_TOKEN" in SETTINGS
    dashboard = kinds(docs, "ConfigMap")["media-pipeline-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["pipeline-dashboard.json"])["uid"] == "media-pipeline"


def test_compose_monitoring_profile_scrapes_the_gateway_with_real_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            assert (DEPLOY / volume.split(":")[0]).is_file(), (
                f"{name} mounts a file that does not exist: {volume}"
            )
    scrape = yaml.safe_load((DEPLOY / "monitoring" / "prometheus.yml").read_text())
    [job] = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["gateway:8000"]
    assert "8000:8000" in services["gateway"]["ports"][0]
    assert "${GRAFANA_PASSWORD:?" in (DEPLOY / "compose.yaml").read_text()
    assert "GRAFANA_PASSWORD=" in (DEPLOY / "example.env").read_text()


def test_the_sentinel_compose_file_names_a_sentinel_url_the_pipeline_understands() -> None:
    from pipeline.ledger.endpoints import SentinelURL

    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.sentinel.yaml").read_text())
    services = data["services"]
    assert {"redis-replica-1", "redis-replica-2", "sentinel-1", "sentinel-2", "sentinel-3"} <= set(services)
    for name in ("gateway", "worker-images", "worker-video", "worker-webhooks"):
        env = services[name]["environment"]
        url = env["PIPELINE_REDIS_URL"].replace("${REDIS_PASSWORD:?}", "secret")
        parsed = SentinelURL.parse(url)
        assert parsed is not None and parsed.master == "main" and len(parsed.sentinels) == 3
        assert parsed.password == "secret" and env["PIPELINE_REDIS_MIN_REPLICAS"] == "1"
    sentinel = " ".join(services["sentinel-1"]["command"])
    assert "sentinel monitor main redis 6379 2" in sentinel


def test_the_sentinel_overlay_scales_on_the_same_lists_through_the_sentinels(
    rendered: list[dict[str, Any]],
) -> None:
    """KEDA reads every list the plain manifests scale on, at the same length, from the master
    the sentinels name; the pipeline waits for a replica, and workers may reach the sentinels."""
    with_sentinel = render("example-sentinel")
    plain = kinds(rendered, "ScaledObject")
    scaled = kinds(with_sentinel, "ScaledObject")
    assert set(scaled) == set(plain)
    auth = kinds(with_sentinel, "TriggerAuthentication")["pipeline-redis-sentinel"]
    assert auth["metadata"]["namespace"] == "media"
    assert {(r["parameter"], r["name"]) for r in auth["spec"]["secretTargetRef"]} == {
        ("password", "pipeline-secrets"),
        ("sentinelPassword", "pipeline-secrets"),
    }
    for name, obj in scaled.items():
        triggers = obj["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"redis-sentinel"}
        assert {t["authenticationRef"]["name"] for t in triggers} == {"pipeline-redis-sentinel"}
        for t in triggers:
            assert t["metadata"]["sentinelMaster"] == "main"
            assert all(a.endswith(":26379") for a in t["metadata"]["addresses"].split(","))
        lengths = {t["metadata"]["listName"]: t["metadata"]["listLength"] for t in triggers}
        expected = {
            t["metadata"]["listName"]: t["metadata"]["listLength"] for t in plain[name]["spec"]["triggers"]
        }
        assert lengths == expected, f"{name} scales on other lists or lengths behind Sentinel"
    config = kinds(with_sentinel, "ConfigMap")["pipeline-config"]["data"]
    assert config["PIPELINE_REDIS_MIN_REPLICAS"] == "1"
    assert set(config) <= SETTINGS
    egress = kinds(with_sentinel, "NetworkPolicy")["workers-egress"]["spec"]["egress"][0]
    assert {p["port"] for p in egress["ports"]} == {6379, 26379}
