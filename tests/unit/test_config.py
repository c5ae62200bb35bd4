"""Configuration loading: defaults, TOML file, environment overrides, secrets file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sigap_pbx.config import Config, ConfigError, load_config, load_secrets


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sigap.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    return str(caught.value)


@pytest.fixture(autouse=True)
def no_default_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_config looks for ./sigap.toml when no path is given.
    monkeypatch.chdir(tmp_path)


def test_defaults_valid(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, ""), environ={})

    assert config == Config()
    assert config.web.host == "127.0.0.1"
    assert config.web.port == 8112
    assert config.ami.host == "127.0.0.1"
    assert config.queue.name == "operators"
    assert [op.endpoint for op in config.sip.operators] == ["op1", "op2"]
    assert config.sip.emergency_numbers == ["112"]


def test_file_values_applied(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[queue]\nname = "dispatch"\n\n[web]\nport = 8200\n',
    )

    config = load_config(path, environ={})

    assert config.queue.name == "dispatch"
    assert config.web.port == 8200


def test_bad_value_names_key_rule_and_variable(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[web]\nport = 70000\n")

    message = config_error(path)

    assert "web.port = 70000" in message
    assert "less than or equal to 65535" in message
    assert str(path) in message
    assert "SIGAP_WEB__PORT" in message


def test_bad_pattern_names_rule(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[queue]\nname = "ops,1"\n')

    message = config_error(path)

    assert "queue.name = 'ops,1'" in message
    assert "must match ^[A-Za-z0-9_-]{1,64}$" in message
    assert "SIGAP_QUEUE__NAME" in message


def test_unknown_key_rejected(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[web]\nprot = 9000\n")

    message = config_error(path)

    assert "web.prot: unknown key" in message
    assert str(path) in message


def test_unknown_env_key_named(tmp_path: Path) -> None:
    message = config_error(None, {"SIGAP_WEB__PROT": "9000"})

    assert "web.prot: unknown key" in message
    assert "SIGAP_WEB__PROT" in message
    assert "the defaults" not in message


def test_invalid_toml_rejected(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[web\nport = 1\n")

    message = config_error(path)

    assert f"{path} is not valid TOML" in message


def test_missing_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    message = config_error(path)

    assert f"configuration file {path} not found" in message


def test_env_override_applies(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[web]\nport = 8200\n")

    config = load_config(path, environ={"SIGAP_WEB__PORT": "9000"})

    assert config.web.port == 9000


def test_env_config_path_used(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[web]\nport = 8300\n")

    config = load_config(None, environ={"SIGAP_CONFIG": str(path)})

    assert config.web.port == 8300


def test_bad_env_value_names_variable() -> None:
    message = config_error(None, {"SIGAP_WEB__PORT": "not-a-port"})

    assert "web.port = 'not-a-port'" in message
    assert "Fix SIGAP_WEB__PORT" in message
    assert "the defaults" not in message


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_web_host_beyond_loopback_needs_tls(tmp_path: Path, host: str) -> None:
    path = write_toml(tmp_path, f'[web]\nhost = "{host}"\n')

    message = config_error(path)

    assert f"host {host!r} is not a loopback address" in message
    assert "set tls_cert and tls_key" in message


def test_web_host_beyond_loopback_with_tls(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[web]\nhost = "0.0.0.0"\ntls_cert = "/etc/sigap/web.crt"\n'
        'tls_key = "/etc/sigap/web.key"\nallowed_hosts = ["Sigap.Example.go.id"]\n',
    )

    config = load_config(path, environ={})

    assert config.web.host == "0.0.0.0"
    assert config.web.allowed_hosts == ["sigap.example.go.id"]


def test_web_tls_cert_without_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[web]\ntls_cert = "/etc/sigap/web.crt"\n')

    assert "tls_cert and tls_key must be set together" in config_error(path)


@pytest.mark.parametrize("name", ["https://sigap.example", "sigap.example:443", ""])
def test_web_allowed_hosts_rejects_non_names(tmp_path: Path, name: str) -> None:
    path = write_toml(tmp_path, f'[web]\nallowed_hosts = ["{name}"]\n')

    assert f"{name!r} is not a host name" in config_error(path)


def test_web_host_must_be_an_address(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[web]\nhost = "localhost"\n')

    assert "'localhost' is not an IP address" in config_error(path)


def test_ami_host_must_be_loopback(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[ami]\nhost = "192.0.2.10"\n')

    message = config_error(path)

    assert "ami.host = '192.0.2.10'" in message
    assert "AMI must be reached on a loopback address" in message


def test_duplicate_endpoints_rejected(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[[sip.operators]]\nendpoint = "op1"\n\n[[sip.operators]]\nendpoint = "op1"\n',
    )

    message = config_error(path)

    assert "must be unique, repeated: ['op1']" in message


# --- Secrets ------------------------------------------------------------------


def test_secrets_file_generated_private(tmp_path: Path) -> None:
    path = write_toml(tmp_path, f'[site]\nstate_dir = "{tmp_path / "state"}"\n')
    config = load_config(path, environ={})

    secrets = load_secrets(config)

    assert sorted(secrets) == ["agi", "ami", "sip.oncall1", "sip.op1", "sip.op2", "sip.spv1"]
    assert len(set(secrets.values())) == 6
    assert all(len(value) >= 12 for value in secrets.values())
    mode = stat.S_IMODE(config.secrets_path.stat().st_mode)
    assert mode == 0o600


def test_secrets_reused_on_second_call(tmp_path: Path) -> None:
    path = write_toml(tmp_path, f'[site]\nstate_dir = "{tmp_path / "state"}"\n')
    config = load_config(path, environ={})

    first = load_secrets(config)
    second = load_secrets(config)

    assert second == first


def test_configured_secret_wins(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        f'[site]\nstate_dir = "{tmp_path / "state"}"\n\n'
        '[ami]\nsecret = "configured-ami-secret"\n',
    )
    config = load_config(path, environ={})

    secrets = load_secrets(config)

    assert secrets["ami"] == "configured-ami-secret"


@pytest.mark.parametrize(
    ("toml", "environ", "key"),
    [
        ('[ami]\nsecret = "short!"\n', {}, "ami.secret"),
        ("", {"SIGAP_AMI__SECRET": "short!"}, "ami.secret"),
        (
            '[[sip.operators]]\nendpoint = "op1"\npassword = "short!"\n',
            {},
            "sip.operators.0.password",
        ),
    ],
    ids=["file", "environment", "operator-password"],
)
def test_invalid_secret_not_shown(
    tmp_path: Path, toml: str, environ: dict[str, str], key: str
) -> None:
    path = write_toml(tmp_path, toml)

    message = config_error(path, environ)

    assert key in message
    assert "short!" not in message


def test_valid_secrets_not_shown_in_errors(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[ami]\nsecret = "ami-secret-value-1"\n\n'
        '[[sip.operators]]\nendpoint = "op1"\npassword = "sip-password-value-1"\n\n'
        '[[sip.operators]]\nendpoint = "op1"\npassword = "sip-password-value-2"\n\n'
        "[web]\nport = 0\n",
    )

    message = config_error(path)

    assert "web.port = 0" in message
    assert "must be unique" in message
    assert "ami-secret-value-1" not in message
    assert "sip-password-value-1" not in message
    assert "sip-password-value-2" not in message
