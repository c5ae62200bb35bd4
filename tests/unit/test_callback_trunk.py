"""The carrier trunk's outbound contact, which callbacks dial through."""

from __future__ import annotations

import json

import pytest

from sigap_pbx.asterisk.render import render_pjsip
from sigap_pbx.config import ConfigError, load_config


def rendered(environ: dict[str, str]) -> str:
    config = load_config(None, environ)
    phones = [*config.sip.operators, config.sip.supervisor, config.sip.oncall]
    return render_pjsip(config, {f"sip.{phone.endpoint}": "secret" for phone in phones})


def trunk_environ(outbound: str) -> dict[str, str]:
    trunk = {"name": "carrier", "match": ["127.0.0.2"], "outbound": outbound}
    return {"SIGAP_SIP__TRUNKS": json.dumps([trunk])}


def test_outbound_renders_aor_contact() -> None:
    text = rendered(trunk_environ("127.0.0.2:17099"))

    endpoint = text.split("[carrier](trunk-template)", 1)[1].split("[carrier-identify]")[0]
    assert "aors = carrier" in endpoint
    assert "[carrier]\ntype = aor\ncontact = sip:127.0.0.2:17099\n" in text


def test_no_outbound_renders_no_aor() -> None:
    text = rendered({})

    assert "aors = carrier" not in text
    assert "contact = sip:" not in text


@pytest.mark.parametrize(
    "outbound", ["127.0.0.2", "sip:127.0.0.2:5060", "127.0.0.2:5060\n[x]", "-host:5060"]
)
def test_invalid_outbound_rejected(outbound: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, trunk_environ(outbound))

    assert "outbound" in str(raised.value)
