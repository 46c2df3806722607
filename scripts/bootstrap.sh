# Sourced by scripts/demo and scripts/test: makes ./.venv with nothing but
# python3, and installs the project into it (editable) with the extras named
# in $EXTRAS. Safe to run again: pip only installs what is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# VENV: the virtualenv to use (made if missing); ./.venv by default.
VENV=${VENV:-"$ROOT/.venv"}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian's python3 ships venv's ensurepip separately.
        rm -rf "$VENV"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "installing python3-venv with apt-get ..." >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$PYTHON" -m venv "$VENV"
        else
            echo "error: '$PYTHON -m venv' failed; install your distribution's python3-venv package" >&2
            exit 1
        fi
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi

SPEC="$ROOT"
[ -n "${EXTRAS:-}" ] && SPEC="$ROOT[$EXTRAS]"
# This machine's pip may name local indexes that are not there; that warning
# is noise, every other line of pip's is kept.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$SPEC" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
