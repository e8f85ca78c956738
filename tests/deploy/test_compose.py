"""Deployment files checked without a container engine: docker-compose.yml, Dockerfile, scripts."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from gradaudit.settings import ENVIRONMENT_VARIABLES, load_settings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"postgres", "redis", "migrate", "api", "worker"}
APP_SERVICES = ("api", "worker", "migrate")
# The CLI's documented subcommands (gradaudit/cli.py).
SUBCOMMANDS = {"serve", "worker", "migrate", "audit", "submit"}
SETTINGS_LIKE = re.compile(r"^(GRADAUDIT_\w+|DATABASE_URL|CELERY_BROKER_URL)$")
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
PLACEHOLDER = "placeholder"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def stages() -> dict[str, list[tuple[str, str]]]:
    return dockerfile_stages((ROOT / "Dockerfile").read_text())


def interpolate(value: object) -> str:
    """Resolve ${VAR}, ${VAR:-default} and ${VAR:?message} as compose would with VAR unset."""
    return INTERPOLATION.sub(lambda m: m["arg"] if m["op"] in ("-", ":-") else PLACEHOLDER, str(value))


def dockerfile_stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Map each stage name to its (INSTRUCTION, arguments) list; FROM comes first."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            current = []
            stages[args.split()[-1] if " AS " in args.upper() else str(len(stages))] = current
        current.append((instruction.upper(), args.strip()))
    return stages


def app_env(compose: dict) -> dict[str, str]:
    """The shared environment of api, worker and migrate, interpolated."""
    return {name: interpolate(value) for name, value in compose["x-gradaudit-env"].items()}


def mounts(service: dict) -> dict[str, str]:
    """Map container path -> volume name (or host path) for a service's volumes."""
    result = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        result[target] = source
    return result


def test_interpolate_resolves_like_compose():
    assert interpolate("${A:?set A}/${B:-3}/${C}") == f"{PLACEHOLDER}/3/{PLACEHOLDER}"


def test_compose_has_the_five_services(compose):
    assert set(compose["services"]) == SERVICES


def test_compose_uses_only_real_settings_variables(compose):
    text = (ROOT / "docker-compose.yml").read_text()
    used = {m["name"] for m in INTERPOLATION.finditer(text)}
    for service in compose["services"].values():
        used |= set(service.get("environment") or {})
    unknown = {name for name in used if SETTINGS_LIKE.match(name)} - set(ENVIRONMENT_VARIABLES)
    assert not unknown, f"not in gradaudit.settings.ENVIRONMENT_VARIABLES: {sorted(unknown)}"


def test_shared_env_sets_every_setting(compose):
    assert set(compose["x-gradaudit-env"]) == set(ENVIRONMENT_VARIABLES)


def test_app_services_share_the_anchor_env(compose):
    text = (ROOT / "docker-compose.yml").read_text()
    assert "x-gradaudit-env: &gradaudit-env" in text
    for name in APP_SERVICES:
        # PyYAML gives an alias the very object of its anchor.
        assert compose["services"][name]["environment"] is compose["x-gradaudit-env"], name


def test_compose_env_builds_production_settings(compose):
    settings = load_settings(app_env(compose))
    assert settings.env == "production"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in settings.database_url
    assert settings.broker_url.startswith("redis://redis:6379")


def test_required_variables_are_in_env_example(compose):
    text = (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    for m in INTERPOLATION.finditer(text):
        set_line = re.search(rf"^{m['name']}=\S", example, re.MULTILINE)
        if m["op"] in ("?", ":?"):
            assert set_line, f"{m['name']} is required by compose but not set in .env.example"
        else:
            assert re.search(rf"^#?\s*{m['name']}=", example, re.MULTILINE), m["name"]


@pytest.mark.parametrize(("service", "probe"), [("postgres", "pg_isready"), ("redis", "ping"), ("api", "/healthz")])
def test_healthchecks(compose, service, probe):
    assert probe in " ".join(compose["services"][service]["healthcheck"]["test"])


def test_migrate_is_one_shot(compose):
    migrate = compose["services"]["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["command"] == ["gradaudit", "migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "ports" not in migrate


@pytest.mark.parametrize("service", ["api", "worker"])
def test_app_waits_for_migration_and_broker(compose, service):
    depends = compose["services"][service]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"


def test_worker_reserves_a_gpu_and_can_scale(compose):
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("count") for d in devices)
    assert "container_name" not in worker and "ports" not in worker


def test_artifact_volume_is_shared_at_the_configured_path(compose):
    artifact_dir = app_env(compose)["GRADAUDIT_ARTIFACT_DIR"]
    sources = {mounts(compose["services"][name]).get(artifact_dir) for name in ("api", "worker")}
    assert len(sources) == 1 and None not in sources, f"api and worker must mount one volume at {artifact_dir}"
    assert sources.pop() in compose["volumes"]


def test_build_targets_exist(compose, stages):
    for name in APP_SERVICES:
        target = compose["services"][name]["build"]["target"]
        assert target in stages
    assert compose["services"]["worker"]["build"]["target"] == "worker"
    assert compose["services"]["api"]["build"]["target"] == "api"


def test_api_port_is_consistent(compose, stages):
    assert "0.0.0.0:8000" in (ROOT / "boot.sh").read_text()
    assert compose["services"]["api"]["ports"] == ["8000:8000"]
    assert ("EXPOSE", "8000") in stages["api"]
    assert "127.0.0.1:8000/healthz" in " ".join(compose["services"]["api"]["healthcheck"]["test"])


def test_images_are_python_slim_and_run_as_non_root(stages):
    assert stages["base"][0] == ("FROM", "python:3.11-slim AS base")
    for name in ("api", "worker"):
        users = [args for instruction, args in stages[name] if instruction == "USER"]
        assert users and users[-1] not in ("root", "0"), name


def test_dockerfile_installs_real_extras(stages, pyproject):
    extras = set(pyproject["project"]["optional-dependencies"])
    text = (ROOT / "Dockerfile").read_text()
    named = set(re.findall(r"\.\[([\w,]+)\]", text)) | set(re.findall(r"\['optional-dependencies'\]\['(\w+)'\]", text))
    assert named and {e for group in named for e in group.split(",")} <= extras
    runs = lambda stage: " ".join(args for instruction, args in stages[stage] if instruction == "RUN")  # noqa: E731
    assert '".[worker]"' in runs("worker")
    assert "pip install --no-compile . " in runs("api") and "worker" not in runs("api")


def test_dockerfile_copies_every_package(stages, pyproject):
    copied = {source for stage in stages.values() for instruction, args in stage
              if instruction == "COPY" and "--from=" not in args
              for source in [word for word in args.split() if not word.startswith("--")][:-1]}
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied
    for source in copied:
        assert (ROOT / source).exists(), source


def commands(compose: dict, stages: dict) -> list[list[str]]:
    """Every command line the containers run: CMDs, compose commands and boot.sh's exec."""
    found = [json.loads(args) for stage in stages.values() for instruction, args in stage if instruction == "CMD"]
    found += [s["command"] for s in compose["services"].values() if isinstance(s.get("command"), list)]
    boot = re.search(r"^exec (.+)$", (ROOT / "boot.sh").read_text(), re.MULTILINE)
    found.append(boot[1].split())
    return found


def test_commands_are_real_console_scripts(compose, stages, pyproject):
    scripts = set(pyproject["project"]["scripts"])
    dependencies = " ".join(pyproject["project"]["dependencies"])
    for command in commands(compose, stages):
        program = command[0]
        if program == "gradaudit":
            assert program in scripts and command[1] in SUBCOMMANDS, command
        elif program == "gunicorn":
            assert re.search(r"\bgunicorn\b", dependencies), "gunicorn is not a dependency"
        elif program == "boot.sh":
            assert any(i == "COPY" and a.endswith("/usr/local/bin/boot.sh") for i, a in stages["api"])
        elif program != "redis-server":
            pytest.fail(f"unknown program {command}")


def test_gunicorn_app_is_a_packaged_module(pyproject):
    module, factory = re.search(r'"(\w+):(\w+)\(\)"', (ROOT / "boot.sh").read_text()).groups()
    assert f"{module}*" in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    api = pytest.importorskip(module)
    if not hasattr(api, factory):
        pytest.skip(f"{module}.{factory} is not written yet")


def test_cli_has_the_subcommands_the_containers_use(compose, stages):
    cli = pytest.importorskip("cli.main")
    group = getattr(cli.main, "commands", None)
    if group is None:
        pytest.skip("cli.main.main is not a click group")
    used = {c[1] for c in commands(compose, stages) if c[0] == "gradaudit"}
    assert used <= set(group)


@pytest.mark.parametrize(("shell", "path"), [
    ("bash", "scripts/test"), ("bash", "scripts/serve"), ("bash", "scripts/lib.sh"),
    ("bash", ".ci/run"), ("sh", "boot.sh"),
])
def test_scripts_parse(shell, path):
    result = subprocess.run([shell, "-n", str(ROOT / path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if path != "scripts/lib.sh":
        assert (ROOT / path).stat().st_mode & 0o111, f"{path} is not executable"
