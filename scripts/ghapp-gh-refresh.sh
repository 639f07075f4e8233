#!/usr/bin/env bash
# ghapp-gh-refresh.sh — keep gh logged in with a fresh GitHub App installation token.
#
# gh stores one token per host (~/.config/gh/hosts.yml) and never refreshes it; installation
# tokens live one hour. Run this every 30 minutes from cron and gh always holds a token with at
# least --min-ttl (default 45m) of life, so it never sees an expired one between two runs:
#
#   */30 * * * * /usr/local/bin/ghapp-gh-refresh.sh acme 2>>"$HOME/.local/state/ghapp-gh-refresh.log"
#   */30 * * * * /usr/local/bin/ghapp-gh-refresh.sh --host ghe.example.com acme/widgets
#
# For one-off commands prefer `ghapp exec --repo OWNER/REPO -- gh …`, which needs no stored login.
#
# Usage: ghapp-gh-refresh.sh [--host HOST] [--min-ttl DURATION] [--permission NAME=LEVEL]...
#                            [--ghapp PATH] [--gh PATH] OWNER[/REPO]
#
# What it does:
#   1. takes an exclusive lock (flock) so overlapping runs never interleave; a run that cannot get
#      the lock within 60 s (GHAPP_GH_REFRESH_LOCK_WAIT) gives up with exit 75;
#   2. unsets GH_TOKEN, GITHUB_TOKEN, GH_ENTERPRISE_TOKEN and GITHUB_ENTERPRISE_TOKEN — gh refuses
#      `auth login` while one of them is set ("The value of the GH_TOKEN environment variable is
#      being used for authentication");
#   3. asks the ghapp daemon for a token (`ghapp token --host HOST --min-ttl D OWNER[/REPO]`) and
#      pipes it to `gh auth login --hostname HOST --with-token`. The token travels through a pipe
#      only: never argv, never the environment, never this script's log.
#
# Logs go to stderr, one timestamped line per event. Exit status:
#   0   gh now holds a fresh token
#   2   bad usage
#   3   ghapp could not give a token (daemon down, App not installed on OWNER, …: see the log)
#   4   gh refused the token (`gh auth login` failed: see the log)
#   69  ghapp or gh not found
#   75  another run held the lock too long
#
# Environment: GHAPP_GH_REFRESH_LOCK (lock file; default $XDG_RUNTIME_DIR/ghapp-gh-refresh.lock,
# else ${XDG_STATE_HOME:-~/.local/state}/ghapp/gh-refresh.lock — never a shared directory such
# as /tmp, where another user could hold it), GHAPP_SOCKET (the daemon's socket, read by ghapp itself).
set -euo pipefail

readonly program="ghapp-gh-refresh"

log() {
  printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$program" "$*" >&2
}

usage() {
  sed -n '/^# Usage:/,/^#$/s/^# \{0,1\}//p' "$0" >&2
}

host="github.com"
min_ttl="45m"
ghapp_bin="ghapp"
gh_bin="gh"
permissions=()
target=""

while [ $# -gt 0 ]; do
  case "$1" in
    --host) [ $# -ge 2 ] || { log "--host needs a value"; exit 2; }; host="$2"; shift 2 ;;
    --host=*) host="${1#*=}"; shift ;;
    --min-ttl) [ $# -ge 2 ] || { log "--min-ttl needs a value"; exit 2; }; min_ttl="$2"; shift 2 ;;
    --min-ttl=*) min_ttl="${1#*=}"; shift ;;
    --permission|-p) [ $# -ge 2 ] || { log "--permission needs NAME=LEVEL"; exit 2; }
      permissions+=(--permission "$2"); shift 2 ;;
    --permission=*) permissions+=(--permission "${1#*=}"); shift ;;
    --ghapp) [ $# -ge 2 ] || { log "--ghapp needs a path"; exit 2; }; ghapp_bin="$2"; shift 2 ;;
    --gh) [ $# -ge 2 ] || { log "--gh needs a path"; exit 2; }; gh_bin="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) log "unknown option $1"; usage; exit 2 ;;
    *)
      [ -z "$target" ] || { log "only one OWNER[/REPO] may be given (got $target and $1)"; exit 2; }
      target="$1"; shift ;;
  esac
done

if [ -z "$target" ]; then
  log "missing OWNER[/REPO]: the account (and optionally repository) whose installation gh should use"
  usage
  exit 2
fi

for tool in "$ghapp_bin" "$gh_bin"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool not found (PATH=$PATH); cron runs with a minimal PATH: give --ghapp/--gh or set PATH in the crontab"
    exit 69
  fi
done

# The lock lives in a directory only this user can write: in a shared one (/tmp) another user
# could create the file first and hold it, and the refresh would never run again.
lock="${GHAPP_GH_REFRESH_LOCK:-}"
if [ -z "$lock" ]; then
  if [ -n "${XDG_RUNTIME_DIR:-}" ] && [ -d "${XDG_RUNTIME_DIR}" ] && [ -O "${XDG_RUNTIME_DIR}" ]; then
    lock="$XDG_RUNTIME_DIR/ghapp-gh-refresh.lock"
  else
    if [ -z "${HOME:-}" ]; then
      log "neither XDG_RUNTIME_DIR nor HOME is set: cannot place the lock file; set GHAPP_GH_REFRESH_LOCK"
      exit 75
    fi
    state_dir="${XDG_STATE_HOME:-$HOME/.local/state}/ghapp"
    # The parents get the umask's mode, the ghapp directory itself 0700.
    mkdir -p "${state_dir%/*}" 2>/dev/null
    [ -d "$state_dir" ] || mkdir -m 0700 "$state_dir" 2>/dev/null
    if [ ! -d "$state_dir" ] || [ -L "$state_dir" ] || [ ! -O "$state_dir" ]; then
      log "cannot use $state_dir for the lock file (missing or not owned by uid $(id -u)); set GHAPP_GH_REFRESH_LOCK"
      exit 75
    fi
    lock="$state_dir/gh-refresh.lock"
  fi
fi
# The lock lives on fd 9 for the rest of the script and is released when it exits.
if ! exec 9>>"$lock"; then
  log "cannot open lock file $lock"
  exit 75
fi
lock_wait="${GHAPP_GH_REFRESH_LOCK_WAIT:-60}"
if ! flock -w "$lock_wait" 9; then
  log "another run has held $lock for ${lock_wait} s; giving up this round"
  exit 75
fi

# gh ignores stored logins (and refuses `auth login`) while any of these is set.
unset GH_TOKEN GITHUB_TOKEN GH_ENTERPRISE_TOKEN GITHUB_ENTERPRISE_TOKEN

# The token is held in a shell variable (not exported) and written with printf, a builtin, so it
# never appears in any process's argv or environment.
token_error="$(mktemp "${TMPDIR:-/tmp}/ghapp-gh-refresh.XXXXXX")"
trap 'rm -f "$token_error"' EXIT
if ! token="$("$ghapp_bin" token --host "$host" --min-ttl "$min_ttl" "${permissions[@]}" "$target" 2>"$token_error")"; then
  log "ghapp token for $target on $host failed: $(tr '\n' ' ' <"$token_error")"
  exit 3
fi
if [ -z "$token" ]; then
  log "ghapp token for $target on $host printed nothing"
  exit 3
fi

if ! login_output="$(printf '%s\n' "$token" | "$gh_bin" auth login --hostname "$host" --with-token 2>&1)"; then
  unset token
  log "gh auth login --hostname $host failed: $(printf '%s' "$login_output" | tr '\n' ' ')"
  exit 4
fi
unset token

log "gh logged in to $host with a fresh installation token for $target (at least $min_ttl of life)"
exit 0
