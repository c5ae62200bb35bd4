"""The error that `sigap` subcommands raise to print one line and exit with status 1.

It lives outside sigap_pbx.cli because `python -m sigap_pbx.cli` runs that module
as __main__: a class defined there would be a second class, and the subcommand
modules, which import sigap_pbx.cli, would raise one that main() does not catch.
"""


class CommandError(Exception):
    """A failed command. Its message states the cause and the next step."""
