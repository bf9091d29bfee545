#!/usr/bin/env python
"""Django's command-line utility for the TOQ media portal."""

import sys


def main() -> None:
    from toqportal.entrypoints import load_settings  # noqa: PLC0415 - Django, once load_settings() ran

    load_settings()
    from django.core.management import execute_from_command_line  # noqa: PLC0415 - Django, once load_settings() ran

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
