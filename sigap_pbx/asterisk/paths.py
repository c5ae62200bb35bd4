"""File locations of an Asterisk instance started by scripts/asterisk.sh.

Asterisk runs in a chroot, so every path has two forms: the host's (what the
controller opens) and the one inside the root (what goes into Asterisk's files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path("/var/lib/sigap/asterisk-root")


@dataclass(frozen=True)
class InstancePaths:
    instance: str
    root: Path

    @classmethod
    def for_instance(cls, instance: str) -> InstancePaths:
        root = Path(os.environ.get("SIGAP_ASTERISK_ROOT", DEFAULT_ROOT))
        return cls(instance=instance, root=root)

    @property
    def inner(self) -> Path:
        """The instance directory as a path inside the root, as Asterisk opens it."""
        return Path("/srv/sigap") / self.instance

    @property
    def host(self) -> Path:
        return self.root / self.inner.relative_to("/")

    @property
    def inner_prompts(self) -> Path:
        return self.inner / "prompts"

    @property
    def cel_db(self) -> Path:
        return self.host / "log" / "cel.db"

    @property
    def cdr_db(self) -> Path:
        return self.host / "log" / "cdr.db"
