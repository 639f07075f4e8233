#!/bin/sh
# container-entrypoint.sh — point git at the host's ghapp daemon when its socket is mounted, then
# run the container's command.
#
#   docker run -v /run/ghapp:/run/ghapp:ro -e GHAPP_SOCKET=/run/ghapp/ghapp.sock \
#     --user 1000:"$(getent group ghapp | cut -d: -f3)" IMAGE make release
#
# (docs/containers.md has the full recipe: socket group, allowed uids/gids, compose.)
#
# When $GHAPP_SOCKET names a socket and git-credential-ghapp is in the image, git is configured
# for the user running the container (--global):
#   - with `ghapp configure --global --host H` for each host when the ghapp CLI is in the image
#     (it writes exactly what `ghapp unconfigure` removes);
#   - otherwise with git config directly, the same keys configure writes:
#       [credential "https://H"]
#           helper =            (resets helpers configured before, e.g. a global `store`)
#           helper = ghapp
#           useHttpPath = true  (git passes owner/repo, so ghapp asks for that repository)
#     written once: re-running adds nothing.
# Hosts: $GHAPP_HOSTS, space-separated host[:port] or URLs (https:// is assumed; http:// only for
# test hosts served by an App with insecure_http), default github.com.
#
# Otherwise git is left untouched: no socket, no helper in the image, or HOME not writable only
# print a note on stderr (silence it with GHAPP_ENTRYPOINT_QUIET=1). The container's command runs
# in every case — this script never stops it. With no command, it runs $SHELL (or /bin/sh).
#
# The private key never enters the container: only the socket does, and the daemon checks each
# connecting process's uid/gid. If the daemon is down, the helper prints nothing and git falls
# through to its next helper (or prompts), exactly as without ghapp.
set -u

note() {
  [ "${GHAPP_ENTRYPOINT_QUIET:-0}" = 1 ] || printf 'ghapp-entrypoint: %s\n' "$*" >&2
}

# Points git's credential lookup for URL $1 at ghapp, unless it already is.
git_config_url() {
  if ! git config --global --get-all "credential.$1.helper" 2>/dev/null | grep -qxF ghapp; then
    git config --global --add "credential.$1.helper" "" \
      && git config --global --add "credential.$1.helper" ghapp \
      || return 1
  fi
  git config --global "credential.$1.useHttpPath" true
}

configure_git() {
  hosts="${GHAPP_HOSTS:-github.com}"
  if ! command -v git >/dev/null 2>&1; then
    note "git is not installed; nothing to configure"
    return 0
  fi
  if ! command -v git-credential-ghapp >/dev/null 2>&1; then
    note "GHAPP_SOCKET is mounted but git-credential-ghapp is not on PATH; git left untouched (copy the helper into the image)"
    return 0
  fi
  for host in $hosts; do
    case "$host" in
      *://*) url="${host%/}" ;;
      *) url="https://$host" ;;
    esac
    if command -v ghapp >/dev/null 2>&1; then
      if ! ghapp configure --global --host "$url" >/dev/null; then
        note "ghapp configure --global --host $url failed; git may not use ghapp for $url"
        continue
      fi
    elif ! git_config_url "$url"; then
      note "cannot write git's global config (is HOME=${HOME:-unset} writable?); git may not use ghapp for $url"
      continue
    fi
    note "git uses ghapp (socket $GHAPP_SOCKET) for $url"
  done
}

if [ -n "${GHAPP_SOCKET:-}" ] && [ -S "$GHAPP_SOCKET" ]; then
  configure_git
elif [ -n "${GHAPP_SOCKET:-}" ]; then
  note "GHAPP_SOCKET=$GHAPP_SOCKET is not a socket (mount the daemon's socket directory); git left untouched"
fi

if [ $# -eq 0 ]; then
  set -- "${SHELL:-/bin/sh}"
fi
exec "$@"
