"""The tests' S3 server: moto's own server, with its list of service folders read once.

moto 5.2 finds the service a request is for by listing its package folder (``os.listdir`` and
an ``isdir`` for each of ~190 entries) on every request, under the dispatcher's lock, twice
when the host is a bare address as ours is: 17 % of the three servers' CPU in
``make test-fast`` (profiled with py-spy). The folders do not change while the server runs,
so this reads them once; every request is still served by moto's code.

    python -m tests.support.moto_main -H 127.0.0.1 -p 5000    # the arguments of moto_server
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from moto import backends
from moto.server import main as moto_main


def cache_service_folders() -> None:
    """Answer moto's dispatcher from one listing of its service folders."""
    folders = frozenset(backends.list_of_moto_modules())

    def listed() -> Iterable[str]:
        return folders

    backends.list_of_moto_modules = listed


def main(argv: list[str] | None = None) -> None:
    cache_service_folders()
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
