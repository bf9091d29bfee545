#!/usr/bin/env bash
# Install what the project needs on a fresh machine: system packages (as root, only the
# missing ones), then .venv with the pinned Python requirements. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# mysqlclient builds against libmariadb-dev (+pkg-config); ffmpeg makes poster frames and
# transcodes; chromium drives the admin browser tests; unzip/7z/bsdtar check our ZIPs;
# libvips is for the benchmarks' reference; redis-server and rabbitmq-server are the
# private brokers the fault suite restarts (tests/fixtures/faults.py); gettext (msgfmt) compiles
# the portal's translations below.
PACKAGES=(libmariadb-dev pkg-config ffmpeg chromium chromium-driver unzip p7zip-full libarchive-tools libvips42 redis-server rabbitmq-server gettext)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages (install them as root): ${missing[*]}" >&2
  fi
fi

# The interpreter of .venv: $PYTHON, else the distribution's own python3.11 when it can make
# a venv, else python3. Debian links its python3.11 statically and builds it with PGO and
# LTO; a pyenv build (shared libpython, no --enable-optimizations) made `make test-fast` use
# ~8 % more CPU (BENCHMARKS.md §6). An existing .venv keeps its interpreter: remove it to switch.
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  if [ -x /usr/bin/python3.11 ] && /usr/bin/python3.11 -c "import ensurepip, venv" 2>/dev/null; then
    PYTHON=/usr/bin/python3.11
  fi
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt requirements-bench.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python requirements"
  .venv/bin/pip install -q --upgrade pip
  # The benchmarks' references (pyvips, numpy) too: make test runs the bench smoke test.
  .venv/bin/pip install -q -r requirements-dev.txt -r requirements-bench.txt
  echo "$want" > "$stamp"
fi

# sharp, the derivatives benchmark's contender (bench/sharp, pinned in its package-lock.json),
# when node is present: without it the benchmark reports sharp as not run.
if command -v npm >/dev/null 2>&1; then
  lock=bench/sharp/package-lock.json
  stamp=bench/sharp/node_modules/.lock.sha
  if [ "$(cat "$stamp" 2>/dev/null)" != "$(sha256sum "$lock" | cut -d' ' -f1)" ]; then
    echo "setup: installing sharp for the benchmarks (npm ci in bench/sharp)"
    (cd bench/sharp && npm ci --no-audit --no-fund --loglevel=error) &&
      sha256sum "$lock" | cut -d' ' -f1 > "$stamp"
  fi
else
  echo "setup: node/npm not found: the derivatives benchmark will run without sharp" >&2
fi

# axe-core for the browser tests' accessibility checks (tests/browser/axe, pinned in its
# package-lock.json): without it those checks fail with a message saying to run setup.
if command -v npm >/dev/null 2>&1; then
  lock=tests/browser/axe/package-lock.json
  stamp=tests/browser/axe/node_modules/.lock.sha
  if [ "$(cat "$stamp" 2>/dev/null)" != "$(sha256sum "$lock" | cut -d' ' -f1)" ]; then
    echo "setup: installing axe-core for the browser tests (npm ci in tests/browser/axe)"
    (cd tests/browser/axe && npm ci --no-audit --no-fund --loglevel=error) &&
      sha256sum "$lock" | cut -d' ' -f1 > "$stamp"
  fi
else
  echo "setup: node/npm not found: the browser tests' accessibility checks cannot run" >&2
fi

# The compiled translations (locale/*/LC_MESSAGES/*.mo) are built here, never committed;
# again only when a catalogue is newer than its .mo (every make target runs setup: ~1 s saved).
stale_catalogues() {
  local po
  for po in locale/*/LC_MESSAGES/*.po; do
    [ -e "$po" ] && ! [ "${po%.po}.mo" -nt "$po" ] && echo "$po"
  done
  return 0
}
if [ -n "$(stale_catalogues)" ]; then
  if command -v msgfmt >/dev/null 2>&1; then
    .venv/bin/python manage.py compilemessages --ignore=.venv --ignore=bench --ignore=tests \
      --ignore=var --ignore=node_modules >/dev/null
  else
    echo "setup: msgfmt (gettext) not found: the portal will show English only" >&2
  fi
fi
