"""docker-compose.yml, the Dockerfiles and the Kubernetes manifests, checked without a Docker
engine or a cluster: the compose file against the compose-spec schema, the Dockerfiles with
hadolint, the manifests against the Kubernetes schemas, and everything they name (files,
images, commands, modules, routes, ports, settings) against the project."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi import FastAPI
from gunicorn.config import Config as GunicornConfig
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from starlette.routing import Match

from api.main import create_app
from cli.main import app as cli_app
from cli.processes import worker_argv
from shared.errors import ConfigurationError
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCKERFILES = ["Dockerfile.api", "Dockerfile.worker"]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            "docker-compose.yml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), dockerfile], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_copies_files_that_exist_and_runs_as_non_root(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE):
        *sources, _ = line.split()
        assert all((ROOT / source).exists() for source in sources), line
    assert re.search(r"^USER (?!root|0\b)\S+", text, flags=re.MULTILINE)
    assert text.count("FROM ") >= 2  # multi-stage: the build tools stay behind


def gunicorn_config(command: list[str]) -> tuple[str, Any]:
    """The app of a gunicorn command line and its settings as Gunicorn reads them: its
    `-c python:MODULE` config first, then the other options."""
    config = GunicornConfig()
    parsed = config.parser().parse_args(command[1:])
    if parsed.config is not None:
        assert parsed.config.startswith("python:"), command
        module = importlib.import_module(parsed.config.removeprefix("python:"))
        for name, value in vars(module).items():
            if name in config.settings and name != "config":
                config.set(name, value)
    for name, value in vars(parsed).items():
        if value is not None and name not in {"args", "config"}:
            config.set(name, value)
    assert len(parsed.args) == 1, command
    target: str = parsed.args[0]
    return target, config


def commands() -> list[list[str]]:
    found = [
        service["command"] for service in compose()["services"].values() if "command" in service
    ]
    for dockerfile in DOCKERFILES:
        cmd = re.search(r"^CMD (\[.*\])$", (ROOT / dockerfile).read_text(), flags=re.MULTILINE)
        assert cmd is not None
        found.append(json.loads(cmd.group(1)))
    found += [argv(container) for _, _, container in containers(manifests())]
    return found


def test_every_command_names_something_that_exists() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    cli_commands = {
        command.name or getattr(command.callback, "__name__", "")
        for command in cli_app.registered_commands
    }
    for command in commands():
        program = command[0]
        if program == "jobq":
            assert "jobq" in scripts and command[1] in cli_commands, command
        elif program == "gunicorn":
            target, config = gunicorn_config(command)
            module, _, factory = target.removesuffix("()").partition(":")
            assert hasattr(importlib.import_module(module), factory), command
            worker_class = config.worker_class_str
            assert importlib.util.find_spec(worker_class.rsplit(".", 1)[0]) is not None, command
        elif program == "redis-server":
            continue  # the redis image's own
        else:
            pytest.fail(f"unknown program in {command}")
    assert importlib.util.find_spec("worker.app") is not None  # the worker healthcheck's app


def test_build_files_exist_and_settings_are_real() -> None:
    fields = {f"JOBQ_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose()["services"].items():
        if "build" in service:
            assert (ROOT / service["build"]["dockerfile"]).exists(), name
        for variable in service.get("environment", {}):
            assert not variable.startswith("JOBQ_") or variable in fields, (name, variable)


# Kubernetes: deploy/kubernetes, checked offline against the schemas kubernetes-validate bundles
# and cross-checked against the project (images, commands, routes, settings) and itself.

KUBE = ROOT / "deploy" / "kubernetes"
# Cluster versions the manifests must be valid for, in strict mode (unknown fields refused).
KUBERNETES_VERSIONS = ["1.30.0", "1.34.0"]
# Variables the manifests may set besides the JOBQ_* settings, each with the module reading it.
OTHER_ENV = {
    "WEB_CONCURRENCY": "gunicorn.config",  # Uvicorn workers per pod, as Dockerfile.api sets it
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client.values",  # multi-process metrics
    "XDG_RUNTIME_DIR": "gunicorn.config",  # Gunicorn's control socket, off the read-only $HOME
}
# Directories the processes write to: each must be in an emptyDir (the root is read-only).
WRITABLE_DIR_ENV = ["PROMETHEUS_MULTIPROC_DIR", "XDG_RUNTIME_DIR"]
PROBES = ["startupProbe", "livenessProbe", "readinessProbe"]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}

Manifest = dict[str, Any]


def load_all(path: Path) -> list[Manifest]:
    loader = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    return [doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc]


def manifests(root: Path = KUBE) -> list[Manifest]:
    """Every Kubernetes object under root, examples included (kustomization.yaml is not one)."""
    found: list[Manifest] = []
    for path in sorted(root.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += load_all(path)
    return found


def where(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def named(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def containers(docs: list[Manifest]) -> list[tuple[str, Manifest, Manifest]]:
    """(where, pod spec, container) for every container of every workload."""
    return [
        (f"{where(doc)} {container['name']}", doc["spec"]["template"]["spec"], container)
        for doc in docs
        if doc["kind"] in WORKLOADS
        for container in doc["spec"]["template"]["spec"].get("initContainers", [])
        + doc["spec"]["template"]["spec"]["containers"]
    ]


def selects(selector: dict[str, str], workload: Manifest) -> bool:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return bool(selector) and selector.items() <= labels.items()


def dockerfile_for(image: str) -> Path:
    """jobq-api:TAG is built from Dockerfile.api, jobq-worker:TAG from Dockerfile.worker."""
    return ROOT / f"Dockerfile.{image.partition(':')[0].removeprefix('jobq-')}"


def dockerfile_argv(dockerfile: Path, instruction: str) -> list[str]:
    """The exec-form argv of a Dockerfile's CMD, or of its HEALTHCHECK's CMD."""
    text = dockerfile.read_text().replace("\\\n", " ")
    found = re.search(rf"^{instruction}\b(?:.*\bCMD)? (\[.*\])$", text, flags=re.MULTILINE)
    assert found is not None, (dockerfile.name, instruction)
    command: list[str] = json.loads(found.group(1))
    return command


def argv(container: Manifest) -> list[str]:
    """What a container runs: `command` (and `args`) replace the image's CMD, as the images
    have no ENTRYPOINT; `args` alone replace it too."""
    if "command" in container or "args" in container:
        command: list[str] = container.get("command", []) + container.get("args", [])
        return command
    return dockerfile_argv(dockerfile_for(container["image"]), "CMD")


def source_data(docs: list[Manifest], kind: str, name: str) -> dict[str, str] | None:
    """A ConfigMap's or Secret's keys and values, None when the manifests have no such object."""
    found = named(docs, kind).get(name)
    if found is None:
        return None
    data: dict[str, str] = dict(found.get("data", {}))
    if kind == "Secret":
        data = {key: base64.b64decode(value).decode() for key, value in data.items()}
        data.update(found.get("stringData", {}))
    return data


def environment(docs: list[Manifest], container: Manifest) -> dict[str, str | None]:
    """The variables a container gets, with their values where the manifests hold them."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if field in source:
                data = source_data(docs, kind, source[field]["name"]) or {}
                env.update({source.get("prefix", "") + key: value for key, value in data.items()})
    for variable in container.get("env", []):
        value: str | None = None
        if "value" in variable:
            value = str(variable["value"])
        for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            ref = variable.get("valueFrom", {}).get(field)
            if ref is not None:
                value = (source_data(docs, kind, ref["name"]) or {}).get(ref["key"])
        env[variable["name"]] = value
    return env


class ManifestSettings(Settings):
    """The settings class reading only the values given to it, not this process's environment
    or .env file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def settings_of(env: dict[str, str | None]) -> Settings:
    """The JOBQ_* values of an environment, validated by the settings class."""
    return ManifestSettings.model_validate(
        {
            name.removeprefix("JOBQ_").lower(): value
            for name, value in env.items()
            if name.startswith("JOBQ_") and value is not None
        }
    )


def has_get_route(app: FastAPI, path: str) -> bool:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def schema_problems(docs: list[Manifest], version: str) -> list[str]:
    found = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            found.append(f"{where(doc)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            found.append(f"{where(doc)}: {exc.message}")
    return found


def kustomization_problems(root: Path) -> list[str]:
    listed = sorted(yaml.safe_load((root / "kustomization.yaml").read_text())["resources"])
    files = sorted(path.name for path in root.glob("*.yaml") if path.name != "kustomization.yaml")
    found = []
    if listed != files:
        found.append(f"kustomization.yaml lists {listed}, the folder holds {files}")
    for name in set(listed) & set(files):
        if any(doc["kind"] == "Secret" for doc in load_all(root / name)):
            found.append(f"{name}: a Secret in kustomization.yaml would overwrite the real one")
    return found


def image_and_command_problems(docs: list[Manifest]) -> list[str]:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    services = compose()["services"].values()
    found = []
    for place, pod, container in containers(docs):
        image: str = container["image"]
        dockerfile = dockerfile_for(image)
        if not image.startswith("jobq-") or not dockerfile.exists():
            found.append(f"{place}: no Dockerfile builds {image}")
            continue
        if image.partition(":")[2] != version:
            found.append(f"{place}: {image} is not tagged with the project version {version}")
        # The image's own CMD, or what a compose service built from the same Dockerfile runs.
        allowed = [dockerfile_argv(dockerfile, "CMD")] + [
            service["command"]
            for service in services
            if "command" in service
            and service.get("build", {}).get("dockerfile") == dockerfile.name
        ]
        if argv(container) not in allowed:
            found.append(f"{place}: runs {argv(container)}, none of {allowed}")
        healthcheck = dockerfile_argv(dockerfile, "HEALTHCHECK")
        for probe in PROBES:
            command = container.get(probe, {}).get("exec", {}).get("command")
            if command is not None and command != healthcheck:
                found.append(f"{place}: {probe} runs {command}, not {healthcheck}")
        user = container.get("securityContext", {}).get("runAsUser")
        user = pod.get("securityContext", {}).get("runAsUser") if user is None else user
        expected = re.findall(r"^USER (\S+)$", dockerfile.read_text(), flags=re.MULTILINE)
        if user is not None and [str(user)] != expected:
            found.append(f"{place}: runs as user {user}, {dockerfile.name} as {expected}")
    return found


def port_probe_and_selector_problems(docs: list[Manifest]) -> list[str]:
    app = create_app(Settings.model_construct())
    found = []
    for place, _, container in containers(docs):
        ports = container.get("ports", [])
        command = argv(container)
        if command[0] == "gunicorn":
            bound = {int(bind.rpartition(":")[2]) for bind in gunicorn_config(command)[1].bind}
            found += [
                f"{place}: container port {port['containerPort']}, but it listens on {bound}"
                for port in ports
                if port["containerPort"] not in bound
            ]
        known = {port.get("name") for port in ports} | {port["containerPort"] for port in ports}
        for probe in PROBES:
            http = container.get(probe, {}).get("httpGet")
            if http is None:
                continue
            if http["port"] not in known:
                found.append(f"{place}: {probe} port {http['port']} is not a container port")
            if not has_get_route(app, http["path"]):
                found.append(f"{place}: {probe} path {http['path']} is no GET route of the API")
    deployments = named(docs, "Deployment").values()
    for name, service in named(docs, "Service").items():
        pods = [d for d in deployments if selects(service["spec"]["selector"], d)]
        if not pods:
            found.append(f"Service/{name}: its selector matches no Deployment's pods")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for pod in pods:
                pod_ports = [
                    (p.get("name"), p["containerPort"])
                    for c in pod["spec"]["template"]["spec"]["containers"]
                    for p in c.get("ports", [])
                ]
                if not any(target in pair for pair in pod_ports):
                    found.append(f"Service/{name}: {where(pod)} has no port {target}")
    return found


def scaling_problems(docs: list[Manifest]) -> list[str]:
    deployments = named(docs, "Deployment")
    found = []
    for name, deployment in deployments.items():
        if not selects(deployment["spec"]["selector"].get("matchLabels", {}), deployment):
            found.append(f"Deployment/{name}: its selector does not match its own pods")
    for name, hpa in named(docs, "HorizontalPodAutoscaler").items():
        ref = hpa["spec"]["scaleTargetRef"]
        target = deployments.get(ref["name"])
        if (ref["apiVersion"], ref["kind"]) != ("apps/v1", "Deployment") or target is None:
            found.append(f"HorizontalPodAutoscaler/{name}: no Deployment {ref['name']}")
            continue
        if "replicas" in target["spec"]:  # every apply would undo the autoscaler's count
            found.append(f"Deployment/{ref['name']} sets replicas while {name} scales it")
        if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
            found.append(f"HorizontalPodAutoscaler/{name}: minReplicas above maxReplicas")
        for metric in hpa["spec"].get("metrics", []):
            resource = metric.get("resource", {}).get("name")
            for container in target["spec"]["template"]["spec"]["containers"]:
                if resource and resource not in container.get("resources", {}).get("requests", {}):
                    found.append(f"{name} scales on {resource}, {container['name']} requests none")
    for name, budget in named(docs, "PodDisruptionBudget").items():
        selector = budget["spec"]["selector"].get("matchLabels", {})
        if not any(selects(selector, deployment) for deployment in deployments.values()):
            found.append(f"PodDisruptionBudget/{name}: its selector matches no Deployment's pods")
    return found


def environment_problems(docs: list[Manifest]) -> list[str]:
    fields = {f"JOBQ_{name.upper()}" for name in Settings.model_fields}
    found = []
    for place, _, container in containers(docs):
        env = environment(docs, container)
        found += [
            f"{place}: {variable} is neither a setting nor one of {sorted(OTHER_ENV)}"
            for variable in env
            if variable not in fields and variable not in OTHER_ENV
        ]
        try:
            settings_of(env)
        except ValidationError as exc:
            found.append(f"{place}: {exc}")
    return found


def reference_problems(docs: list[Manifest]) -> list[str]:
    found = []
    for place, pod, container in containers(docs):
        refs: list[tuple[str, Manifest, str | None]] = []
        for source in container.get("envFrom", []):
            refs += [("ConfigMap", source[f], None) for f in ["configMapRef"] if f in source]
            refs += [("Secret", source[f], None) for f in ["secretRef"] if f in source]
        for variable in container.get("env", []):
            value_from = variable.get("valueFrom", {})
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if field in value_from:
                    refs.append((kind, value_from[field], value_from[field]["key"]))
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                refs.append(("ConfigMap", volume["configMap"], None))
            if "secret" in volume:
                secret = volume["secret"]
                refs.append(("Secret", {**secret, "name": secret["secretName"]}, None))
        for kind, ref, key in refs:
            data = source_data(docs, kind, ref["name"])
            if ref.get("optional", False):
                continue
            if data is None:
                found.append(f"{place}: no {kind} {ref['name']} in the manifests")
            elif key is not None and key not in data:
                found.append(f"{place}: {kind} {ref['name']} has no key {key}")
    return found


def shutdown_problems(docs: list[Manifest]) -> list[str]:
    found = []
    for place, pod, container in containers(docs):
        if not place.startswith("Deployment/"):
            continue
        try:
            needed = settings_of(environment(docs, container)).shutdown_grace
        except ValidationError:
            continue  # reported by environment_problems
        command = argv(container)
        if command[0] == "gunicorn":  # it waits this long for its workers, then kills them
            needed = max(needed, gunicorn_config(command)[1].graceful_timeout)
        granted = pod.get("terminationGracePeriodSeconds", 30)
        if granted <= needed:
            found.append(f"{place}: killed after {granted} s, needs more than {needed:g} s")
    return found


def security_problems(docs: list[Manifest]) -> list[str]:
    found = []
    for place, pod, container in containers(docs):
        context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        if context.get("runAsNonRoot") is not True:
            found.append(f"{place}: runAsNonRoot is not true")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{place}: allowPrivilegeEscalation is not false")
        if context.get("readOnlyRootFilesystem") is not True:
            found.append(f"{place}: the root filesystem is writable")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            found.append(f"{place}: capabilities are not dropped")
        for bound in ("requests", "limits"):
            resources = container.get("resources", {}).get(bound, {})
            if not {"cpu", "memory"} <= resources.keys():
                found.append(f"{place}: no cpu and memory {bound}")
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        scratch = {
            mount["mountPath"]
            for mount in container.get("volumeMounts", [])
            if "emptyDir" in volumes.get(mount["name"], {}) and not mount.get("readOnly")
        }
        found += [
            f"{place}: mounts {mount['name']}, which is no volume of its pod"
            for mount in container.get("volumeMounts", [])
            if mount["name"] not in volumes
        ]
        if "/tmp" not in scratch:  # tempfile, Gunicorn's worker heartbeat files
            found.append(f"{place}: no emptyDir at /tmp under a read-only root filesystem")
        env = environment(docs, container)
        found += [
            f"{place}: {variable}={env[variable]} is in no emptyDir"
            for variable in WRITABLE_DIR_ENV
            if variable in env
            and not any(Path(env[variable] or "/").is_relative_to(path) for path in scratch)
        ]
    return found


CHECKS = [
    image_and_command_problems,
    port_probe_and_selector_problems,
    scaling_problems,
    environment_problems,
    reference_problems,
    shutdown_problems,
    security_problems,
]


def problems(root: Path) -> list[str]:
    """Everything the tests above check, for the manifests under root (one schema version)."""
    docs = manifests(root)
    found = kustomization_problems(root) + schema_problems(docs, KUBERNETES_VERSIONS[-1])
    if found:
        return found  # the checks below take the manifests' shape for granted
    for check in CHECKS:
        found += check(docs)
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schema_strictly(version: str) -> None:
    docs = manifests()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Job", "Secret"} <= {
        doc["kind"] for doc in docs
    }
    assert schema_problems(docs, version) == []


def test_kustomization_lists_every_manifest_but_the_secret() -> None:
    assert kustomization_problems(KUBE) == []


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_manifests_agree_with_the_project_and_each_other(
    check: Callable[[list[Manifest]], list[str]],
) -> None:
    assert check(manifests()) == []


def test_other_variables_are_read_by_what_the_pods_run() -> None:
    for variable, module in OTHER_ENV.items():
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        assert variable in Path(spec.origin).read_text(), (variable, module)
    assert "WEB_CONCURRENCY" in (ROOT / "Dockerfile.api").read_text()


def test_worker_probe_pings_the_node_jobq_worker_starts() -> None:
    """celery@$HOSTNAME is right only while `jobq worker` leaves Celery's default node name
    (celery@<hostname>; a pod's hostname is its name) and the probe names the same app."""
    command = worker_argv(Settings.model_construct())
    assert not {"-n", "--hostname"} & set(command)
    assert not any(part.startswith("--hostname=") for part in command)
    app_module = command[command.index("-A") + 1]
    worker = named(manifests(), "Deployment")["jobq-worker"]["spec"]["template"]["spec"]
    probe = worker["containers"][0]["livenessProbe"]["exec"]["command"]
    assert probe[:2] == ["sh", "-c"]  # so that $HOSTNAME is expanded
    assert f"-A {app_module} inspect ping -d celery@$HOSTNAME" in probe[2]


def test_the_example_secret_holds_only_placeholders_that_are_refused() -> None:
    (secret,) = named(manifests(), "Secret").values()
    values = source_data([secret], "Secret", secret["metadata"]["name"]) or {}
    assert values and all("REPLACE-ME" in value for value in values.values())
    with pytest.raises(ConfigurationError):
        load_settings(env="production", secret_key=values["JOBQ_SECRET_KEY"])


# Each change breaks the manifests in one way; the checks above must notice every one.
BREAKAGES = {
    "unknown field": ("worker-deployment.yaml", "timeoutSeconds: 30", "timeoutSecond: 30"),
    "bad field type": ("api-hpa.yaml", "maxReplicas: 10", "maxReplicas: ten"),
    "unlisted manifest": ("kustomization.yaml", "  - worker-hpa.yaml\n", ""),
    "image no Dockerfile builds": (
        "worker-deployment.yaml",
        "image: jobq-worker:",
        "image: jobq-workers:",
    ),
    "stale image tag": ("api-deployment.yaml", "jobq-api:0.1.0", "jobq-api:0.0.9"),
    "unknown command": ("migrate-job.yaml", '["jobq", "migrate"]', '["jobq", "upgrade"]'),
    "probe command": ("worker-deployment.yaml", "--timeout 5", "--timeout 50"),
    "probe path": ("api-deployment.yaml", "path: /ready", "path: /readyz"),
    "probe port": (
        "api-deployment.yaml",
        "port: http\n            periodSeconds: 10",
        "port: web\n            periodSeconds: 10",
    ),
    "container port": ("api-deployment.yaml", "containerPort: 8000", "containerPort: 8080"),
    "service selector": (
        "api-service.yaml",
        "  selector:\n    app.kubernetes.io/name: jobq\n    app.kubernetes.io/component: api",
        "  selector:\n    app.kubernetes.io/name: jobq\n    app.kubernetes.io/component: web",
    ),
    "service target port": ("api-service.yaml", "targetPort: http", "targetPort: web"),
    "autoscaler target": (
        "worker-hpa.yaml",
        "kind: Deployment\n    name: jobq-worker",
        "kind: Deployment\n    name: jobq-workers",
    ),
    "budget selector": (
        "api-pdb.yaml",
        "      app.kubernetes.io/component: api",
        "      app.kubernetes.io/component: web",
    ),
    "invented variable": ("api-deployment.yaml", "name: WEB_CONCURRENCY", "name: JOBQ_API_WORKERS"),
    "invented config key": (
        "configmap.yaml",
        "  JOBQ_ENV: production",
        '  JOBQ_ENV: production\n  JOBQ_TIMEOUT: "3"',
    ),
    "bad setting value": (
        "configmap.yaml",
        'JOBQ_SHUTDOWN_GRACE: "25"',
        'JOBQ_SHUTDOWN_GRACE: "soon"',
    ),
    "missing secret key": ("api-deployment.yaml", "key: JOBQ_REDIS_URL", "key: JOBQ_REDIS"),
    "missing config map": ("migrate-job.yaml", "name: jobq-config", "name: jobq-settings"),
    "short worker grace": (
        "worker-deployment.yaml",
        "terminationGracePeriodSeconds: 45",
        "terminationGracePeriodSeconds: 25",
    ),
    "grace below shutdown grace": (
        "configmap.yaml",
        'JOBQ_SHUTDOWN_GRACE: "25"',
        'JOBQ_SHUTDOWN_GRACE: "50"',
    ),
    "root allowed": ("worker-deployment.yaml", "runAsNonRoot: true", "runAsNonRoot: false"),
    "no limits": ("migrate-job.yaml", "limits:\n              cpu: 500m\n", "limits:\n"),
    "metrics dir not writable": (
        "api-deployment.yaml",
        "value: /tmp/prometheus",
        "value: /var/prometheus",
    ),
}


def test_an_intact_copy_of_the_manifests_passes(tmp_path: Path) -> None:
    shutil.copytree(KUBE, tmp_path / "kubernetes")
    assert problems(tmp_path / "kubernetes") == []


@pytest.mark.parametrize(("file", "old", "new"), BREAKAGES.values(), ids=BREAKAGES.keys())
def test_a_broken_copy_of_the_manifests_is_caught(
    tmp_path: Path, file: str, old: str, new: str
) -> None:
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBE, copy)
    text = (copy / file).read_text()
    assert text.count(old) == 1, (file, old)
    (copy / file).write_text(text.replace(old, new))
    assert problems(copy) != []
