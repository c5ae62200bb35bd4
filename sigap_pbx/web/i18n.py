"""Interface text in Indonesian (the default) and English.

Each page module registers its own messages with `register`, keyed by a dotted
name, as (Indonesian, English) pairs. The language comes from the `sigap_lang`
cookie, which the language switch sets.
"""

from __future__ import annotations

from collections.abc import Mapping

LANGUAGES = ("id", "en")
DEFAULT_LANGUAGE = "id"
LANG_COOKIE = "sigap_lang"

MESSAGES: dict[str, tuple[str, str]] = {}


def register(messages: Mapping[str, tuple[str, str]]) -> None:
    for key, pair in messages.items():
        if key in MESSAGES and MESSAGES[key] != pair:
            raise ValueError(f"message {key!r} is registered twice with different text")
        MESSAGES[key] = pair


def translate(key: str, lang: str) -> str:
    """Return the text of `key` in `lang`; an unknown key returns the key itself."""
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "en" else pair[0]


def language(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


register({
    "app.name": ("Sigap 112", "Sigap 112"),
    "nav.wallboard": ("Papan pantau", "Wallboard"),
    "nav.console": ("Konsol operator", "Operator console"),
    "nav.portal": ("Portal instansi", "Agency portal"),
    "nav.history": ("Riwayat panggilan", "Call history"),
    "nav.api": ("API", "API"),
    "nav.signout": ("Keluar", "Sign out"),
    "nav.language": ("English", "Bahasa Indonesia"),
    "nav.signed_in_as": ("Masuk sebagai", "Signed in as"),
    "login.title": ("Masuk", "Sign in"),
    "login.username": ("Nama pengguna", "Username"),
    "login.password": ("Kata sandi", "Password"),
    "login.submit": ("Masuk", "Sign in"),
    "login.failed": (
        "Nama pengguna atau kata sandi salah, atau akun dinonaktifkan.",
        "The username or password is wrong, or the account is disabled.",
    ),
    "login.limited": (
        "Terlalu banyak percobaan gagal. Coba lagi dalam {seconds} detik.",
        "Too many failed attempts. Try again in {seconds} seconds.",
    ),
    "login.expired": (
        "Formulir kedaluwarsa. Muat ulang halaman lalu coba lagi.",
        "The form has expired. Reload the page and try again.",
    ),
    "error.not_found": (
        "Halaman ini tidak ada.", "This page does not exist."
    ),
    "error.forbidden": (
        "Halaman ini bukan untuk peran Anda.", "This page is not for your role."
    ),
    "live.connected": ("Terhubung", "Connected"),
    "live.disconnected": (
        "Terputus, menyambung ulang…", "Disconnected, reconnecting…"
    ),
    "role.operator": ("Operator", "Operator"),
    "role.supervisor": ("Supervisor", "Supervisor"),
    "role.agency": ("Petugas instansi", "Agency staff"),
    "role.admin": ("Administrator", "Administrator"),
})
