"""Print where each part of a running stack listens (used by `make run`)."""

from __future__ import annotations

from sigap_pbx.cli import mask_password
from sigap_pbx.config import load_config


def main() -> None:
    config = load_config()
    sip = config.sip
    trunk_sources = ", ".join(", ".join(t.match) for t in sip.trunks)
    print(
        f"""
Sigap 112 is starting (instance '{config.site.instance}', state in {config.state_dir})
  Asterisk trunk     udp {sip.trunk_bind}   (carrier calls from {trunk_sources})
  Asterisk phones    udp {sip.operator_bind}   (operators: {', '.join(o.endpoint for o in sip.operators)};
                     supervisor {sip.supervisor.endpoint}, on-call {sip.oncall.endpoint};
                     passwords in {config.secrets_path})
  Emergency numbers  {', '.join(sip.emergency_numbers)}
  AMI                tcp {config.ami.host}:{config.ami.port}
  FastAGI            tcp {config.agi.host}:{config.agi.port}
  Web pages          {"https" if config.web.tls_cert else "http"}://{config.web.host}:{config.web.port}/login
                     (first account: .venv/bin/sigap user add NAME --role admin)
  Database           {mask_password(config.database_url)}
Press Ctrl-C to stop everything.
""",
        flush=True,
    )


if __name__ == "__main__":
    main()
