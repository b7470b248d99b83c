#!/usr/bin/env bash
# memberflow's two set-up commands (see README):
#   ./dev.sh start   install into .venv and run the platform on embedded defaults (http://127.0.0.1:3000)
#   ./dev.sh test    install into .venv and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

install() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || { echo "memberflow needs Python 3.11 or newer (found: $("$PYTHON" --version))" >&2; exit 1; }
    "$PYTHON" -m venv "$VENV"
  fi
  # Re-install only when the dependencies changed.
  stamp="$VENV/.memberflow-installed"
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
    "$VENV/bin/python" -m pip check
    echo "$want" > "$stamp"
  fi
}

# The notebook app's browser test drives Debian's Chromium and its driver (never a browser download).
install_browser() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium/chromium-driver missing: the browser test is skipped (apt-get install chromium chromium-driver)" >&2
  fi
}

case "${1:-}" in
  start) install; shift; exec "$VENV/bin/memberflow" start "$@" ;;
  test)  install; install_browser; shift; exec "$VENV/bin/python" -m pytest "$@" ;;
  *) echo "usage: ./dev.sh start|test [args...]" >&2; exit 2 ;;
esac
