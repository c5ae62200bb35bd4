"""Checks of the container deployment in docker/.

No Docker engine runs where these tests run, so they read the files. They also run
what needs no engine: `bash -n` on the entrypoints, the controller entrypoint with a
stub `sigap`, and the example configuration through the real loader. The
compose.yaml checks need PyYAML and are skipped without it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sigap_pbx.asterisk.paths import InstancePaths
from sigap_pbx.config import load_config

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
EXAMPLE_CONFIG = DOCKER / "sigap.toml"
ENTRYPOINTS = [DOCKER / "entrypoint-asterisk.sh", DOCKER / "entrypoint-controller.sh"]

# Build context of each Dockerfile, relative to the repository root. COPY sources
# are resolved against it, and test_compose_build_contexts checks that compose.yaml
# uses the same contexts.
DOCKERFILE_CONTEXTS = {
    "Dockerfile.asterisk": "docker",
    "Dockerfile.controller": ".",
}

# Host names of package mirrors and indexes, and the settings that choose one. The
# images must use the default sources of their base images.
MIRROR_PATTERNS = [
    re.compile(r"\bdebian\.(?:org|net)\b", re.IGNORECASE),
    re.compile(r"\bubuntu\.com\b", re.IGNORECASE),
    re.compile(r"\b(?:pypi\.org|pythonhosted\.org)\b", re.IGNORECASE),
    re.compile(r"\bftp\.[a-z0-9-]+\.[a-z0-9.-]+", re.IGNORECASE),
    re.compile(r"\bmirrors?\.[a-z0-9-]+\.[a-z0-9.-]+", re.IGNORECASE),
    re.compile(r"^\s*(?:deb|deb-src)\s+\S+://", re.MULTILINE),
    re.compile(r"^\s*URIs:", re.MULTILINE),
    re.compile(r"--(?:extra-)?index-url|--trusted-host|PIP_INDEX_URL"),
]

# A compose variable reference, `${NAME}` or `${NAME:-default}`.
COMPOSE_VARIABLE = re.compile(r"\$\{[A-Za-z0-9_]+(?::?-(?P<default>[^}]*))?\}")


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, with continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions(path):
        if keyword == "ENV":
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def interpolate_defaults(text: str) -> str:
    """Replace each compose variable reference by its default, as with no .env file."""
    return COMPOSE_VARIABLE.sub(lambda match: match.group("default") or "", text)


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in (service.get("environment") or {}).items():
        env[name] = interpolate_defaults("" if value is None else str(value))
    return env


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Map each named volume or bind source of a service to its container path."""
    mounts: dict[str, str] = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[source] = target
    return mounts


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse compose.yaml")
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def controller_env() -> dict[str, str]:
    return dockerfile_env(DOCKER / "Dockerfile.controller")


# compose.yaml -----------------------------------------------------------------------


def test_compose_parses_as_mapping(compose: dict[str, Any]) -> None:
    assert isinstance(compose, dict)
    assert isinstance(compose.get("services"), dict)
    assert set(compose["services"]) == {"asterisk", "controller", "postgres"}


def test_postgres_only_with_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"].get("profiles") == ["postgres"]
    assert "profiles" not in services["asterisk"]
    assert "profiles" not in services["controller"]
    dependency = services["controller"]["depends_on"]["postgres"]
    # Without `required: false` the controller could not start without the profile.
    assert dependency["required"] is False


def test_services_have_healthcheck_or_depends_on(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        has_check = bool(service.get("healthcheck", {}).get("test"))
        assert has_check or service.get("depends_on"), f"service {name}"


def test_services_have_restart_policy(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("restart") in {"always", "unless-stopped"}, f"service {name}"


def test_loopback_services_share_host_network(compose: dict[str, Any]) -> None:
    # AMI, FastAGI and the web API are loopback-only, so Asterisk and the controller
    # need one loopback that survives a restart of either container.
    for name in ("asterisk", "controller"):
        assert compose["services"][name].get("network_mode") == "host", name


def test_host_network_services_publish_nothing(compose: dict[str, Any]) -> None:
    # Docker discards published ports on the host's network, so an entry would only
    # mislead a reader.
    for name, service in compose["services"].items():
        if service.get("network_mode") == "host":
            assert not service.get("ports"), f"service {name}"


def test_published_tcp_ports_bind_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            if isinstance(entry, dict):
                protocol = entry.get("protocol", "tcp")
                host_ip = entry.get("host_ip", "")
            else:
                mapping, _, protocol = interpolate_defaults(str(entry)).partition("/")
                protocol = protocol or "tcp"
                parts = mapping.split(":")
                host_ip = parts[0] if len(parts) == 3 else ""
            if protocol == "tcp":
                assert host_ip == "127.0.0.1", f"service {name} publishes {entry!r}"


def test_web_port_never_published(
    compose: dict[str, Any], controller_env: dict[str, str]
) -> None:
    env = {**controller_env, **compose_environment(compose["services"]["controller"])}
    port = load_config(EXAMPLE_CONFIG, environ=env).web.port
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            text = json.dumps(entry)
            assert not re.search(rf"\b{port}\b", text), f"service {name}: {entry!r}"


def test_compose_build_contexts(compose: dict[str, Any]) -> None:
    for name in ("asterisk", "controller"):
        build = compose["services"][name]["build"]
        dockerfile = (DOCKER / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile.exists(), f"service {name}: {dockerfile}"
        context = (DOCKER / build["context"]).resolve()
        expected = (REPO / DOCKERFILE_CONTEXTS[dockerfile.name]).resolve()
        assert context == expected, f"service {name}"


def test_compose_bind_sources_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for source in volume_mounts(service):
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"service {name}: {source}"


def test_shared_volume_paths_agree(
    compose: dict[str, Any],
    controller_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The controller writes and reads where Asterisk reads and writes."""
    env = {**controller_env, **compose_environment(compose["services"]["controller"])}
    config = load_config(EXAMPLE_CONFIG, environ=env)
    monkeypatch.setenv("SIGAP_ASTERISK_ROOT", controller_env["SIGAP_ASTERISK_ROOT"])
    paths = InstancePaths.for_instance(config.site.instance)
    asterisk = volume_mounts(compose["services"]["asterisk"])
    controller = volume_mounts(compose["services"]["controller"])

    assert asterisk["asterisk-etc"] == str(paths.inner / "etc")
    assert controller["asterisk-etc"] == str(config.asterisk_etc_dir)
    assert asterisk["prompts"] == str(paths.inner_prompts)
    assert controller["prompts"] == str(config.prompts_dir)
    assert asterisk["asterisk-log"] == str(paths.inner / "log")
    assert controller["asterisk-log"] == str(paths.cel_db.parent)
    assert controller["sigap-state"] == str(config.state_dir)
    assert controller["./sigap.toml"] == controller_env["SIGAP_CONFIG"]

    entrypoint = (DOCKER / "entrypoint-asterisk.sh").read_text(encoding="utf-8")
    assert f"INSTANCE_DIR={paths.inner}\n" in entrypoint
    assert 'CONFIG_DIR="$INSTANCE_DIR/etc/current"' in entrypoint


# The example configuration ----------------------------------------------------------


def test_example_config_is_valid(controller_env: dict[str, str]) -> None:
    config = load_config(EXAMPLE_CONFIG, environ=controller_env)
    assert config.site.instance == "main"
    assert str(config.state_dir) == "/var/lib/sigap"


def test_example_config_keeps_loopback(controller_env: dict[str, str]) -> None:
    config = load_config(EXAMPLE_CONFIG, environ=controller_env)
    assert ipaddress.ip_address(config.web.host).is_loopback
    assert ipaddress.ip_address(config.ami.host).is_loopback
    assert ipaddress.ip_address(config.agi.host).is_loopback


# Dockerfiles -------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILE_CONTEXTS))
def test_dockerfile_runs_as_non_root(dockerfile: str) -> None:
    users = [
        arguments.split(":")[0]
        for keyword, arguments in dockerfile_instructions(DOCKER / dockerfile)
        if keyword == "USER"
    ]
    assert users, f"{dockerfile} has no USER instruction"
    assert users[-1] not in {"root", "0"}


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILE_CONTEXTS))
def test_dockerfile_has_healthcheck(dockerfile: str) -> None:
    keywords = [keyword for keyword, _ in dockerfile_instructions(DOCKER / dockerfile)]
    assert "HEALTHCHECK" in keywords


def test_images_share_service_uid() -> None:
    # The controller writes 0600 files that Asterisk reads, so the uids must match.
    uids = {}
    for dockerfile in DOCKERFILE_CONTEXTS:
        for keyword, arguments in dockerfile_instructions(DOCKER / dockerfile):
            if keyword == "ARG" and arguments.startswith("SIGAP_UID="):
                uids[dockerfile] = arguments.partition("=")[2]
    assert set(uids) == set(DOCKERFILE_CONTEXTS)
    assert len(set(uids.values())) == 1, uids


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILE_CONTEXTS))
def test_copy_sources_exist(dockerfile: str) -> None:
    context = REPO / DOCKERFILE_CONTEXTS[dockerfile]
    copies = 0
    for keyword, arguments in dockerfile_instructions(DOCKER / dockerfile):
        if keyword not in {"COPY", "ADD"}:
            continue
        if arguments.startswith("["):
            words = json.loads(arguments)
        else:
            words = shlex.split(arguments)
        if any(word.startswith("--from") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        for source in paths[:-1]:
            matches = list(context.glob(source))
            assert matches, f"{dockerfile}: {source} not found in {context}"
            copies += 1
    assert copies > 0


# Files in docker/ --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(p for p in DOCKER.rglob("*") if p.is_file()), ids=lambda p: p.name
)
def test_no_package_mirror_named(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    for pattern in MIRROR_PATTERNS:
        match = pattern.search(text)
        assert match is None, f"{path.name} names a mirror: {match.group(0)!r}"


@pytest.mark.parametrize("path", ENTRYPOINTS, ids=lambda p: p.name)
def test_entrypoint_executable_with_shebang(path: Path) -> None:
    assert path.stat().st_mode & stat.S_IXUSR, f"{path.name} is not executable"
    assert path.read_text(encoding="utf-8").startswith("#!")


@pytest.mark.parametrize("path", ENTRYPOINTS, ids=lambda p: p.name)
def test_entrypoint_bash_syntax(path: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# The controller entrypoint, run with a stub `sigap` -----------------------------------

STUB_SIGAP = """#!/usr/bin/env bash
# Stands in for `sigap`: writes one file where render-config and prompts would.
set -euo pipefail
case "$1" in
render-config) mkdir -p "$3"; echo "[general]" >"$3/extensions.conf" ;;
prompts) mkdir -p "$SIGAP_SITE__STATE_DIR/prompts" ;;
*) echo "stub sigap: unexpected command $*" >&2; exit 2 ;;
esac
"""


def run_controller_entrypoint(
    tmp_path: Path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "sigap"
    stub.write_text(STUB_SIGAP, encoding="utf-8")
    stub.chmod(0o755)
    state = tmp_path / "state"
    (state / "asterisk-etc").mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "SIGAP_SITE__STATE_DIR": str(state),
    }
    return subprocess.run(
        [str(DOCKER / "entrypoint-controller.sh"), *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_render_publishes_current_symlink(tmp_path: Path) -> None:
    result = run_controller_entrypoint(tmp_path, "render")
    assert result.returncode == 0, result.stderr
    current = tmp_path / "state" / "asterisk-etc" / "current"
    assert current.is_symlink()
    target = os.readlink(current)
    # Relative, so that it resolves in both containers' mount paths.
    assert not os.path.isabs(target)
    assert target.startswith("gen-")
    assert (current / "extensions.conf").is_file()


def test_render_keeps_two_renderings(tmp_path: Path) -> None:
    for _ in range(4):
        result = run_controller_entrypoint(tmp_path, "render")
        assert result.returncode == 0, result.stderr
    etc = tmp_path / "state" / "asterisk-etc"
    renderings = sorted(p.name for p in etc.iterdir() if p.name.startswith("gen-"))
    assert len(renderings) == 2
    assert os.readlink(etc / "current") == renderings[-1]
    leftovers = [p.name for p in etc.iterdir() if p.name.startswith(".current")]
    assert leftovers == []


def test_entrypoint_runs_other_commands(tmp_path: Path) -> None:
    result = run_controller_entrypoint(tmp_path, "echo", "hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
    assert not (tmp_path / "state" / "asterisk-etc" / "current").exists()
