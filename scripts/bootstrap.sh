# Sourced by scripts/demo and scripts/test: makes ./.venv with nothing but
# python3, and installs the project into it (editable) with the extras named
# in $EXTRAS. Safe to run again: it installs only what is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# VENV: the virtualenv to use (made if missing); ./.venv by default.
VENV=${VENV:-"$ROOT/.venv"}
PYTHON=${PYTHON:-python3}

# pip's lines worth hiding: this machine's pip may name local indexes that
# are not there; every other line of pip's is kept.
quiet_pip() {
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

if [ ! -x "$VENV/bin/python" ]; then
    # The first install takes a while: say what it is.
    echo "installing twisted-stream${EXTRAS:+ [$EXTRAS]} into $VENV: Twisted, treq, httptools and" \
         "what they need (once; about 20 s) ..." >&2
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
    quiet_pip --upgrade pip
fi

# pip install -e installs the project again every time, its scripts too: it
# runs only when setup.py has changed or an extra is asked for that is not
# installed, so that two runs at once (the demo under both test runners) do
# not rewrite each other's scripts, and a second run starts at once (remove
# the stamp to install again).
STAMP="$VENV/.twisted-stream-installed"
WANT=$(sha256sum "$ROOT/setup.py" | cut -c1-16)
HAVE="" HAVE_EXTRAS="" INSTALL=no
if [ -f "$STAMP" ]; then read -r HAVE HAVE_EXTRAS < "$STAMP" || true; fi
[ "$HAVE" = "$WANT" ] || { INSTALL=yes; HAVE_EXTRAS=""; }
ASKED=${EXTRAS:-}
for extra in ${ASKED//,/ }; do
    case ",$HAVE_EXTRAS," in *",$extra,"*) ;; *) INSTALL=yes; HAVE_EXTRAS="${HAVE_EXTRAS:+$HAVE_EXTRAS,}$extra" ;; esac
done
if [ "$INSTALL" = yes ]; then
    SPEC="$ROOT"
    [ -n "$HAVE_EXTRAS" ] && SPEC="$ROOT[$HAVE_EXTRAS]"
    quiet_pip -e "$SPEC"
    echo "$WANT $HAVE_EXTRAS" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
