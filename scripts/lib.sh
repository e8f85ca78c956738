# Shared set-up for scripts/test and scripts/serve. Source it; do not run it.
# shellcheck shell=bash

GRADAUDIT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$GRADAUDIT_ROOT/.venv"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

_apt_updated=""
# apt_install PACKAGE... : install Debian packages, running apt-get update once per script.
apt_install() {
    [ "$(id -u)" = 0 ] || die "need root to apt-get install $*; install them by hand"
    if [ -z "$_apt_updated" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _apt_updated=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ensure_python: a python3 >= 3.11 that can create virtual environments.
ensure_python() {
    if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3 python3-venv
    fi
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "python3 is $(python3 -V 2>&1); gradaudit needs 3.11 or newer"
}

# ensure_venv EXTRAS : .venv with `pip install -e ".[EXTRAS]"`, redone only when pyproject.toml changed.
ensure_venv() {
    local extras="$1" spec="." stamp digest
    [ -n "$extras" ] && spec=".[$extras]"
    stamp="$VENV/.gradaudit-installed-${extras:-base}"
    digest="$(sha256sum "$GRADAUDIT_ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
        log "removing a broken $VENV"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        ensure_python
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
        return 0
    fi
    log "pip install -e \"$spec\" (pyproject.toml changed or first install)"
    (cd "$GRADAUDIT_ROOT" && PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -e "$spec")
    echo "$digest" >"$stamp"
}
