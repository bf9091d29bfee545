"""Zip a folder reproducibly for Lambda: sorted entries, fixed timestamps, deflated.

Same input files give a byte-identical zip (and so the same CodeSha256): a deploy of an
unchanged build changes nothing. Used by scripts/build_lambdas.sh.
"""

from __future__ import annotations

import os
import stat
import sys
import zipfile
from pathlib import Path

FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def zip_folder(source: Path, target: Path) -> int:
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    partial = target.with_suffix(target.suffix + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as out:
        for path in files:
            entry = zipfile.ZipInfo(path.relative_to(source).as_posix(), FIXED_TIME)
            executable = os.stat(path).st_mode & stat.S_IXUSR
            entry.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as data, out.open(entry, "w") as sink:
                while chunk := data.read(1024 * 1024):
                    sink.write(chunk)
    partial.replace(target)
    return len(files)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: lambda_zip.py <folder> <target.zip>")
    zip_folder(Path(sys.argv[1]), Path(sys.argv[2]))
