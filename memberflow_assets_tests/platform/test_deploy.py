"""deploy/: every shipped config passes Dagster's own config validation (no cloud needed), the image
recipe agrees with the repository, and the code location serves and runs the way production starts
it — zones in S3 (moto's server) and the sales database on an external PostgreSQL."""

import hashlib
import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from importlib.metadata import version as installed_version
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import process_workspace_config
from dagster._grpc.client import DagsterGrpcClient
from dagster_aws.ecs.container_context import EcsContainerContext
from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
from dagster_postgres.utils import pg_url_from_config
from kubernetes import client as k8s
from moto.iam.policy_validation import BaseIAMPolicyValidator, IAMPolicyDocumentValidator
from packaging.requirements import Requirement

from memberflow_assets import postgres
from memberflow_assets.settings import REPO_ROOT, SQL_DIR
from memberflow_assets.testing.network import free_port
from memberflow_assets.zones import Zones
from memberflow_assets_tests.helpers import HEADER, land, wait_until

DEPLOY = REPO_ROOT / "deploy"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
CODE_MODULE = PYPROJECT["tool"]["dagster"]["module_name"]
LOCATION_NAME = PYPROJECT["tool"]["dagster"]["code_location_name"]

# What ECS injects into the webserver, daemon and run tasks (values are placeholders here).
ECS_INSTANCE_ENV = {
    "DAGSTER_PG_HOST": "memberflow-prod.cluster-example.ap-southeast-1.rds.amazonaws.com",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "from-secrets-manager",
    "DAGSTER_COMPUTE_LOG_BUCKET": "memberflow-prod-dagster",
}


def load_yaml(relpath: str) -> dict:
    return yaml.safe_load((DEPLOY / relpath).read_text())


def validate_class_config(block: Mapping) -> dict:
    """A `{module, class, config}` block checked against the class's own config schema, environment
    variables resolved — what DagsterInstance does when it loads the class, without starting it."""
    klass = getattr(importlib.import_module(block["module"]), block["class"])
    result = process_config(resolve_to_config_type(klass.config_type()), block.get("config") or {})
    if not result.success:
        raise dg.DagsterInvalidConfigError(f"invalid {block['class']} config", result.errors, block.get("config"))
    return result.value


def validate_instance_config(config: Mapping, home: Path) -> dict:
    """Dagster's instance config validation of a dagster.yaml, as every Dagster process runs it."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(dict(config)))
    validated, _ = dagster_instance_config(str(home))
    return dict(validated)


def validate_postgres_storage(instance_config: Mapping) -> dict:
    """The `storage: postgres:` block with its environment variables resolved (the instance schema
    checks its shape but leaves {env: ...} unresolved until the storage starts)."""
    postgres_storage = {"module": "dagster_postgres", "class": "DagsterPostgresStorage"}
    return validate_class_config(postgres_storage | {"config": instance_config["storage"]["postgres"]})


def settings_variables() -> set[str]:
    """The environment variables memberflow_assets.settings reads."""
    source = (REPO_ROOT / "memberflow_assets" / "settings.py").read_text()
    return set(re.findall(r'_env\("([A-Z0-9_]+)"\)', source))


# Variables every AWS SDK reads; anything else a deploy file sets must be one memberflow reads.
AWS_VARIABLES = {"AWS_REGION"}


# -- the ECS instance config ----------------------------------------------------------------------
@pytest.fixture
def ecs_env(monkeypatch):
    for name, value in ECS_INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)


def test_ecs_instance_config_passes_dagster_validation(ecs_env, tmp_path):
    config = validate_instance_config(load_yaml("ecs/dagster.yaml"), tmp_path)

    url = pg_url_from_config(validate_postgres_storage(config))
    assert url.startswith("postgresql+psycopg2://dagster:from-secrets-manager@memberflow-prod.cluster-example")
    assert url.endswith("/dagster?sslmode=require")

    launcher = validate_class_config(config["run_launcher"])
    assert config["run_launcher"]["class"] == "EcsRunLauncher"
    assert launcher["secrets_tag"] is None  # no account-wide secret discovery
    assert launcher["use_current_ecs_task_config"] is False
    assert launcher["run_task_kwargs"]["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"

    logs = validate_class_config(config["compute_logs"])
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert logs["bucket"] == ECS_INSTANCE_ENV["DAGSTER_COMPUTE_LOG_BUCKET"]

    assert config["run_queue"]["max_concurrent_runs"] > 0
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    assert config["telemetry"]["enabled"] is False


@pytest.mark.parametrize("missing", sorted(ECS_INSTANCE_ENV))
def test_ecs_instance_config_refuses_to_load_without_each_secret_or_setting(ecs_env, tmp_path, monkeypatch, missing):
    monkeypatch.delenv(missing)
    config = load_yaml("ecs/dagster.yaml")
    with pytest.raises(dg.DagsterInvalidConfigError):
        validated = validate_instance_config(config, tmp_path)
        validate_postgres_storage(validated)
        validate_class_config(validated["compute_logs"])


@pytest.mark.parametrize(
    ("path", "bad_value"),
    [
        (("run_queue", "max_concurent_runs"), 20),  # misspelt key
        (("run_launcher", "config", "use_current_ecs_task_conf"), False),
        (("compute_logs", "config", "upload_intervall"), 30),
        (("storage", "postgres", "postgres_db", "hostnme"), "x"),
    ],
)
def test_the_validation_catches_a_misspelt_key(ecs_env, tmp_path, path, bad_value):
    config = load_yaml("ecs/dagster.yaml")
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad_value
    with pytest.raises(dg.DagsterInvalidConfigError):
        validated = validate_instance_config(config, tmp_path)
        for block in ("run_launcher", "compute_logs"):
            validate_class_config(validated[block])


def test_ecs_workspace_and_code_server_container_context_are_valid():
    workspace = process_workspace_config(load_yaml("ecs/workspace.yaml"))
    assert workspace.success, workspace.errors
    (server,) = [entry["grpc_server"] for entry in workspace.value["load_from"]]
    assert server["location_name"] == LOCATION_NAME
    assert server["port"] == chart_user_deployment()["port"]

    context_config = json.loads((DEPLOY / "ecs" / "code-server-container-context.json").read_text())
    context = EcsContainerContext.create_from_config(context_config)
    assert context.task_role_arn.endswith(":role/memberflow-prod-code")
    assert {name.split("=")[0] for name in context.env_vars} <= settings_variables() | AWS_VARIABLES
    assert {secret["name"] for secret in context.secrets} <= settings_variables()


# -- the Helm values (primary) --------------------------------------------------------------------
def camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def translate(values: Mapping, known: set[str]) -> dict:
    """camelCase chart values to the snake_case config keys the chart writes, refusing unknown keys."""
    unknown = set(values) - known
    assert not unknown, f"not a value the chart knows here: {sorted(unknown)}"
    return {camel_to_snake(key): value for key, value in values.items()}


K8S_RUN_LAUNCHER_VALUES = {
    "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile", "envConfigMaps", "envSecrets",
    "envVars", "volumeMounts", "volumes", "labels", "resources", "schedulerName", "securityContext",
    "runK8sConfig", "failPodOnRunFailure",
}  # fmt: skip
RUN_K8S_CONFIG_VALUES = {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"}
S3_COMPUTE_LOG_VALUES = {
    "bucket", "localDir", "prefix", "useSsl", "verify", "verifyCertPath", "endpointUrl", "skipEmptyFiles",
    "uploadInterval", "uploadExtraArgs", "showUrlOnly", "region",
}  # fmt: skip
QUEUE_VALUES = {"maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds", "dequeueUseThreads",
                "dequeueNumWorkers"}  # fmt: skip


def chart_instance_config(values: Mapping, release: str = "dagster") -> dict:
    """The dagster.yaml that the chart's instance ConfigMap template writes from these values.

    A transcription of the template's blocks that memberflow sets — storage, queue, run launcher,
    compute logs, monitoring, retries, sensors, schedules, retention, telemetry — strict about keys,
    so a misspelt value fails here instead of being silently ignored by the chart.
    """
    pg = values["postgresql"]
    launcher = dict(values["runLauncher"]["config"]["k8sRunLauncher"])
    run_k8s_config = launcher.pop("runK8sConfig", {})
    launcher_config = translate(launcher, K8S_RUN_LAUNCHER_VALUES) | {
        "run_k8s_config": translate(run_k8s_config, RUN_K8S_CONFIG_VALUES),
        "instance_config_map": f"{release}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "dagster_home": values["global"]["dagsterHome"],
        "service_account_name": values["serviceAccount"]["name"],
        "env_config_maps": [f"{release}-pipeline-env", *launcher["envConfigMaps"]],
    }
    daemon = values["dagsterDaemon"]
    retention = values["retention"]
    return {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "username": pg["postgresqlUsername"],
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "hostname": pg["postgresqlHost"],
                    "db_name": pg["postgresqlDatabase"],
                    "port": pg["service"]["port"],
                    "params": pg["postgresqlParams"],
                    "scheme": pg["postgresqlScheme"],
                }
            }
        },
        "run_coordinator": {
            "module": "dagster",
            "class": daemon["runCoordinator"]["type"],
            "config": translate(daemon["runCoordinator"]["config"]["queuedRunCoordinator"], QUEUE_VALUES),
        },
        "run_launcher": {"module": "dagster_k8s", "class": values["runLauncher"]["type"], "config": launcher_config},
        "compute_logs": {
            "module": "dagster_aws.s3.compute_log_manager",
            "class": values["computeLogManager"]["type"],
            "config": translate(values["computeLogManager"]["config"]["s3ComputeLogManager"], S3_COMPUTE_LOG_VALUES),
        },
        "run_monitoring": {camel_to_snake(key): value for key, value in daemon["runMonitoring"].items()},
        "run_retries": {camel_to_snake(key): value for key, value in daemon["runRetries"].items()},
        "sensors": {camel_to_snake(key): value for key, value in daemon["sensors"].items()},
        "schedules": {camel_to_snake(key): value for key, value in daemon["schedules"].items()},
        "retention": {
            "schedule": {"purge_after_days": retention["schedule"]["purgeAfterDays"]},
            "sensor": {"purge_after_days": retention["sensor"]["purgeAfterDays"]},
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }


def chart_values() -> dict:
    return load_yaml("helm/values.yaml")


def chart_user_deployment() -> dict:
    (deployment,) = chart_values()["dagster-user-deployments"]["deployments"]
    return deployment


def test_helm_values_render_an_instance_config_that_dagster_accepts(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-the-kubernetes-secret")
    values = chart_values()
    config = validate_instance_config(chart_instance_config(values), tmp_path)

    launcher = validate_class_config(config["run_launcher"])
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert launcher["load_incluster_config"] is True
    logs = validate_class_config(config["compute_logs"])
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert logs["bucket"] == "memberflow-prod-dagster"
    queue = validate_class_config(config["run_coordinator"])
    assert queue["max_concurrent_runs"] == 20

    assert pg_url_from_config(validate_postgres_storage(config)).endswith("/dagster?sslmode=require")
    assert not values["postgresql"]["enabled"] and not values["generatePostgresqlPasswordSecret"]
    assert values["postgresql"]["postgresqlPassword"] == ""  # the password lives in the Secret only


def test_helm_values_kubernetes_objects_are_valid_kubernetes_models():
    values = chart_values()
    deployment = chart_user_deployment()
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    objects = [
        (k8s.V1ResourceRequirements, launcher["resources"]),
        (k8s.V1SecurityContext, launcher["securityContext"]),
        # Partial specs, merged by dagster-k8s into the run pod and Job it generates.
        (k8s.V1PodSpec, launcher["runK8sConfig"]["podSpecConfig"] | {"containers": [{"name": "run"}]}),
        (k8s.V1JobSpec, launcher["runK8sConfig"]["jobSpecConfig"] | {"template": {}}),
        (k8s.V1ResourceRequirements, deployment["resources"]),
        (k8s.V1PodSecurityContext, deployment["podSecurityContext"]),
        (k8s.V1SecurityContext, deployment["securityContext"]),
        *((k8s.V1Volume, volume) for volume in deployment["volumes"]),
        *((k8s.V1VolumeMount, mount) for mount in deployment["volumeMounts"]),
    ]
    for component in ("dagsterWebserver", "dagsterDaemon"):
        objects += [
            (k8s.V1ResourceRequirements, values[component]["resources"]),
            (k8s.V1PodSecurityContext, values[component]["podSecurityContext"]),
            (k8s.V1SecurityContext, values[component]["securityContext"]),
        ]
    for model, data in objects:
        k8s_model_from_dict(model, k8s_snake_case_dict(model, data))

    with pytest.raises(Exception, match="Unexpected keys"):  # the check is real: a misspelt field fails
        k8s_model_from_dict(k8s.V1SecurityContext, {"run_as_non_rot": True})


def test_helm_code_location_matches_the_project_and_the_image():
    values = chart_values()
    deployment = chart_user_deployment()
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", CODE_MODULE]
    assert deployment["name"] == LOCATION_NAME
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]  # runs inherit env, secrets, volumes
    assert deployment["image"]["tag"] != "latest"
    assert set(deployment["env"]) <= settings_variables() | AWS_VARIABLES
    # The sales database DSN comes from a Secret, never from the values.
    assert "MEMBERFLOW_PG_DSN" not in deployment["env"] and deployment["envSecrets"] == [
        {"name": "memberflow-sales-db"}
    ]
    warehouse_dir = str(Path(deployment["env"]["MEMBERFLOW_WAREHOUSE"]).parent)
    assert warehouse_dir in {mount["mountPath"] for mount in deployment["volumeMounts"]}

    # One image everywhere, running as the image's own non-root user.
    image_uid = int(dockerfile_stages()["base"]["USER"][-1].split(":")[0])
    for component in (values["dagsterWebserver"], values["dagsterDaemon"], deployment):
        assert component["image"]["repository"] == deployment["image"]["repository"]
        assert component["podSecurityContext"]["runAsNonRoot"] is True
        assert component["podSecurityContext"]["runAsUser"] == image_uid
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["securityContext"]["runAsUser"] == image_uid


def test_kubernetes_and_ecs_run_the_same_queue_logs_and_recovery_policy(ecs_env, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "x")
    k8s_config = validate_instance_config(chart_instance_config(chart_values()), tmp_path / "k8s")
    ecs_config = validate_instance_config(load_yaml("ecs/dagster.yaml"), tmp_path / "ecs")

    queue = validate_class_config(k8s_config["run_coordinator"])
    for key in ("max_concurrent_runs", "tag_concurrency_limits", "dequeue_use_threads", "dequeue_num_workers"):
        assert queue[key] == ecs_config["run_queue"][key], key
    k8s_logs, ecs_logs = (validate_class_config(config["compute_logs"]) for config in (k8s_config, ecs_config))
    for key in ("prefix", "upload_interval", "skip_empty_files"):
        assert k8s_logs[key] == ecs_logs[key], key
    for block in ("run_retries", "sensors", "schedules", "retention", "telemetry"):
        assert k8s_config[block] == ecs_config[block], block
    assert k8s_config["storage"]["postgres"]["postgres_db"]["params"] == {"sslmode": "require"}
    assert k8s_config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert ecs_config["storage"]["postgres"]["postgres_db"]["params"] == {"sslmode": "require"}


def kubernetes_manifests() -> dict[str, list[dict]]:
    return {path.name: list(yaml.safe_load_all(path.read_text())) for path in sorted((DEPLOY / "k8s").glob("*.yaml"))}


def pod_spec(document: dict) -> dict:
    return document["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", sorted(kubernetes_manifests()))
def test_kubernetes_manifests_are_valid_objects_running_the_memberflow_image_as_its_user(name):
    image_uid = int(dockerfile_stages()["base"]["USER"][-1].split(":")[0])
    repository = chart_user_deployment()["image"]["repository"]
    documents = kubernetes_manifests()[name]
    for document in documents:
        model = getattr(k8s, document["apiVersion"].split("/")[-1].upper() + document["kind"])
        k8s_model_from_dict(model, k8s_snake_case_dict(model, document))
    workloads = [document for document in documents if document["kind"] in {"Deployment", "Job"}]
    assert workloads
    for workload in workloads:
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == image_uid
        for container in pod["containers"]:
            assert container["image"].rsplit(":", 1)[0] == repository
            assert {variable["name"] for variable in container.get("env", [])} <= settings_variables() | AWS_VARIABLES


def test_upload_api_serves_the_api_module_with_a_health_probe():
    (deployment,) = [d for d in kubernetes_manifests()["upload-api.yaml"] if d["kind"] == "Deployment"]
    (container,) = pod_spec(deployment)["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    app_module, _, app_name = container["command"][container["command"].index("uvicorn") + 1].partition(":")
    assert hasattr(importlib.import_module(app_module), app_name)


def test_analytics_app_serves_the_notebook_read_only_behind_the_dagster_uis_sign_in():
    from memberflow_assets.cli import build_parser
    from memberflow_assets.cli.warehouse import NOTEBOOK

    manifests = {d["kind"]: d for d in kubernetes_manifests()["analytics-app.yaml"]}
    pod = pod_spec(manifests["Deployment"])
    (container,) = pod["containers"]
    assert container["command"][0] == "memberflow"
    assert build_parser().parse_args(container["command"][1:]).command == "analytics"
    copied = {shlex.split(arguments)[0] for arguments in dockerfile_stages()["base"]["COPY"]}
    assert NOTEBOOK.exists() and str(NOTEBOOK.parent.relative_to(REPO_ROOT)) in copied  # in the image
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # the published warehouse, read-only: the same volume the code location writes, mounted read-only
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env["MEMBERFLOW_WAREHOUSE"] == chart_user_deployment()["env"]["MEMBERFLOW_WAREHOUSE"]
    [mount] = [m for m in container["volumeMounts"] if env["MEMBERFLOW_WAREHOUSE"].startswith(m["mountPath"] + "/")]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] and volume["persistentVolumeClaim"]["readOnly"]
    [written] = chart_user_deployment()["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == written["persistentVolumeClaim"]["claimName"]
    assert container["securityContext"]["readOnlyRootFilesystem"]
    # behind the internal ALB with OIDC sign-in, like the Dagster UI (same IdP)
    ingress = manifests["Ingress"]["metadata"]["annotations"]
    ui = chart_values()["ingress"]["annotations"]
    assert ingress["alb.ingress.kubernetes.io/scheme"] == "internal" == ui["alb.ingress.kubernetes.io/scheme"]
    assert ingress["alb.ingress.kubernetes.io/auth-type"] == "oidc" == ui["alb.ingress.kubernetes.io/auth-type"]
    idp, ui_idp = (json.loads(a["alb.ingress.kubernetes.io/auth-idp-oidc"]) for a in (ingress, ui))
    assert {k: v for k, v in idp.items() if k != "secretName"} == {k: v for k, v in ui_idp.items() if k != "secretName"}


def test_migration_job_runs_the_projects_migrate_command():
    from memberflow_assets.cli import build_parser

    (job,) = kubernetes_manifests()["migrate-job.yaml"]
    (container,) = pod_spec(job)["containers"]
    assert container["command"][0] == "memberflow"
    assert build_parser().parse_args(container["command"][1:]).command == "migrate"
    # The same sales database secret as the code location.
    assert container["envFrom"] == [{"secretRef": secret} for secret in chart_user_deployment()["envSecrets"]]


# -- AWS policies: IAM's policy grammar (as moto implements it) ----------------------------------
def test_code_role_policy_is_valid_iam_and_scoped_to_memberflow_resources():
    text = (DEPLOY / "aws" / "code-role-policy.json").read_text()
    IAMPolicyDocumentValidator(text).validate()
    for statement in json.loads(text)["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert "*" not in resources, statement["Sid"]
        assert statement["Effect"] == "Allow" and not any(action.endswith(":*") for action in statement["Action"])

    broken = json.loads(text)
    broken["Statement"][0]["Efect"] = broken["Statement"][0].pop("Effect")
    with pytest.raises(Exception, match="Syntax errors"):
        IAMPolicyDocumentValidator(json.dumps(broken)).validate()


def test_zones_bucket_policy_is_valid_and_refuses_plain_http():
    text = (DEPLOY / "aws" / "zones-bucket-policy.json").read_text()
    BaseIAMPolicyValidator(text).validate()
    statements = {statement["Sid"]: statement for statement in json.loads(text)["Statement"]}
    tls = statements["DenyAnyRequestWithoutTls12"]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    bucket = chart_user_deployment()["env"]["MEMBERFLOW_STORAGE_URL"].removeprefix("s3://").split("/")[0]
    assert f"arn:aws:s3:::{bucket}/*" in tls["Resource"]


# -- the Dockerfile (no Docker engine here: checked statically) -----------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = (line.strip() for line in text.splitlines())
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def dockerfile_stages() -> dict[str, dict[str, list[str]]]:
    """Instructions by stage name (`FROM ... AS name`), each instruction's arguments in order."""
    stages: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            image, _, name = arguments.partition(" AS ")
            current = {"FROM": [image.strip()]}
            stages[name.strip()] = current
        else:
            current.setdefault(instruction, []).append(arguments)
    return stages


def test_dockerfile_copies_only_files_that_exist_and_the_context_admits():
    ignore = [line for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]  # fmt: skip
    assert ignore[0] == "*", "the build context is an allow-list"
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copies = [args for stage in dockerfile_stages().values() for args in stage.get("COPY", [])]
    assert copies
    for arguments in copies:
        *sources, _destination = shlex.split(arguments)
        for source in sources:
            assert (REPO_ROOT / source).exists(), source
            assert source.rstrip("/") in admitted, f"{source} is not in the build context"


def test_dockerfile_installs_the_pinned_dependencies_and_keeps_sql_beside_the_package():
    stages = dockerfile_stages()
    base = stages["base"]
    assert base["FROM"] == ["python:3.11-slim"]
    workdir = base["WORKDIR"][-1]

    # The RUN that builds requirements.txt, executed here against the repository: exactly the pins of
    # pyproject.toml, which are the versions this test run is using.
    (snippet,) = [re.search(r'python -c "(.+?)"', run).group(1) for run in base["RUN"] if "tomllib" in run]
    printed = subprocess.run([sys.executable, "-c", snippet], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    requirements = [Requirement(line) for line in printed.stdout.split()]
    assert [str(r) for r in requirements] == [str(Requirement(d)) for d in PYPROJECT["project"]["dependencies"]]
    for requirement in requirements:
        assert requirement.specifier.contains(installed_version(requirement.name), prereleases=True), requirement

    destinations = {shlex.split(args)[0]: shlex.split(args)[-1] for args in base["COPY"]}
    package_dir = Path(workdir, destinations["memberflow_assets"])
    sql_dir = Path(workdir, destinations["sql"])
    assert sql_dir == package_dir.parent / SQL_DIR.relative_to(REPO_ROOT)  # settings.SQL_DIR inside the image
    assert any("pip install --no-deps -e ." in run for run in base["RUN"])  # editable: sql/ is found from there


def test_dockerfile_runs_as_non_root_and_serves_the_project_code_location():
    stages = dockerfile_stages()
    assert list(stages)[-1] == "code", "the default build target is the code location image"
    user = stages["base"]["USER"][-1].split(":")[0]
    assert user.isdigit() and int(user) > 0

    command = json.loads(stages["code"]["CMD"][-1])
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[command.index("--module-name") + 1] == CODE_MODULE
    assert int(command[command.index("--port") + 1]) == chart_user_deployment()["port"]
    assert stages["code"]["EXPOSE"] == [str(chart_user_deployment()["port"])]

    ecs_copy = shlex.split(stages["ecs-system"]["COPY"][-1])
    assert ecs_copy[:-1] == ["deploy/ecs/dagster.yaml", "deploy/ecs/workspace.yaml"]
    assert ecs_copy[-1].rstrip("/") == dict(line.split("=", 1) for line in
                                            shlex.split(stages["base"]["ENV"][0]))["DAGSTER_HOME"]  # fmt: skip


# -- the code location, started like production -------------------------------------------------
def dagster_cli() -> str:
    return str(Path(sys.executable).parent / "dagster")


@pytest.fixture
def code_server(s3_env):
    """The image's code server command (Dockerfile CMD), on loopback, with production-style settings:
    zones in S3 (moto), the sales database at MEMBERFLOW_PG_DSN. Yields the port."""
    port = free_port()
    command = json.loads(dockerfile_stages()["code"]["CMD"][-1])
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    process = subprocess.Popen([dagster_cli(), *command[1:]], env=dict(os.environ), cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        client = DagsterGrpcClient(port=port, host="127.0.0.1")

        def serving() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"code server exited: {process.stderr.read()}")
            try:
                return client.health_check_query() == "SERVING"
            except Exception:
                return False

        wait_until(serving, 120, "the code server to serve", every=0.5)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_code_location_serves_and_runs_with_s3_zones_and_external_postgres(code_server, s3_env, pg_dsn, tmp_path):
    port = code_server
    # The probe the Helm chart gives the code server pod.
    probe = subprocess.run([dagster_cli(), "api", "grpc-health-check", "-p", str(port)], capture_output=True)
    assert probe.returncode == 0, probe.stderr

    # A Dagster instance shaped like production: storage on PostgreSQL, compute logs on S3 with the
    # shipped compute-log settings (only the endpoint differs: moto).
    bucket = s3_env.removeprefix("s3://").split("/")[0]
    compute_logs = load_yaml("ecs/dagster.yaml")["compute_logs"]
    compute_logs["config"] |= {"bucket": bucket, "endpoint_url": os.environ["MEMBERFLOW_S3_ENDPOINT_URL"]}
    storage_url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", pg_dsn)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({
        "storage": {"postgres": {"postgres_url": storage_url}},
        "compute_logs": compute_logs,
        # No daemon here to dequeue runs: launch each at once, through the code server.
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
        "telemetry": {"enabled": False},
    }))  # fmt: skip
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump({
        "load_from": [{"grpc_server": {"host": "127.0.0.1", "port": port, "location_name": LOCATION_NAME}}]
    }))  # fmt: skip

    zones = Zones.from_settings()
    assert zones.is_s3
    land(zones, "deploy_check.csv", f"{HEADER}\nAnn Lee,ann@example.com,1990-05-17,91234567\n")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("application_files", ["deploy_check"])
        launch = subprocess.run(
            [dagster_cli(), "job", "launch", "-w", str(tmp_path / "workspace.yaml"), "-j", "membership_batch",
             "--tags", json.dumps({"dagster/partition": "deploy_check"})],
            env={**os.environ, "DAGSTER_HOME": str(home)}, cwd=tmp_path, capture_output=True, text=True,
        )  # fmt: skip
        assert launch.returncode == 0, launch.stderr
        (launched,) = instance.get_runs()

        def finished() -> dg.DagsterRun | None:
            run = instance.get_run_by_id(launched.run_id)
            return run if run.is_finished else None

        run = wait_until(finished, 180, "the launched run to finish", every=1)
        assert run.status == dg.DagsterRunStatus.SUCCESS, [
            event.message for event in instance.all_logs(run.run_id) if event.is_dagster_event and event.is_error
        ]

    # The run worker wrote the zones in S3, the members into the external PostgreSQL, and its step
    # logs into the compute-log bucket.
    assert zones.exists("members/successful/deploy_check.parquet")
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT membership_id FROM sales.members")
        assert cursor.fetchall() == [("Lee_" + hashlib.sha256(b"19900517").hexdigest()[:5],)]
    log_objects = zones.fs.find(f"{bucket}/{compute_logs['config']['prefix']}")
    assert any(run.run_id in path for path in log_objects), log_objects
    assert postgres.apply_migrations(pg_dsn) == []  # the deployment's migrate step left nothing to do


# -- the architecture document points at real code -------------------------------------------------
REPO_PATH = re.compile(r"^(memberflow_assets|memberflow_assets_tests|sql|deploy|docs|bench|\.ci)/[\w./-]*$")


def referenced_paths(markdown: Path) -> set[str]:
    """Repository paths a document links to or names in backticks."""
    text = markdown.read_text()
    links = set()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        path = os.path.normpath(markdown.parent / target).removeprefix(f"{REPO_ROOT}/")
        links.add(path + "/" if target.endswith("/") else path)
    named = {token for token in re.findall(r"`([^`\s]+)`", text) if REPO_PATH.match(token)}
    return {path for path in links | named if not path.startswith("..")}


def test_every_path_the_architecture_document_points_at_exists():
    paths = referenced_paths(REPO_ROOT / "docs" / "architecture.md")
    assert "deploy/helm/values.yaml" in paths and "memberflow_assets/zones.py" in paths
    missing = sorted(path for path in paths if not (REPO_ROOT / path).exists())
    assert not missing, f"docs/architecture.md points at paths that do not exist: {missing}"
