#!/usr/bin/env bash
# install.sh — build and install ghapp and git-credential-ghapp (and github-emulator, for
# `ghapp demo`) for this user (or system-wide with --prefix /usr/local). Run `./install.sh --help` for the options; README.md has the full setup.
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly repo_dir
readonly binaries=(ghapp git-credential-ghapp)
# `ghapp demo` runs the GitHub emulator as its own program, so that ghapp (which holds App keys)
# links no emulator code; it is installed beside ghapp, where the demo looks first.
readonly demo_binary=github-emulator

usage() {
  cat <<'EOF'
Usage: ./install.sh [OPTIONS]

Builds ghapp in release mode (cargo build --release --locked) and installs:
  PREFIX/bin/ghapp, PREFIX/bin/git-credential-ghapp (built statically linked on Linux —
                    with musl when Rust's musl target is installed, else glibc — as git starts
                    it for every fetch and push; --from installs DIR's as is)
  PREFIX/bin/github-emulator              (only for `ghapp demo`; leave it out with --no-demo)
  PREFIX/bin/ghapp-gh-refresh.sh          (cron: keeps gh logged in; see its header)
  PREFIX/share/ghapp/container-entrypoint.sh   (for container images: docs/containers.md)
  PREFIX/share/bash-completion/completions/ghapp
  PREFIX/share/zsh/site-functions/_ghapp
  PREFIX/share/fish/vendor_completions.d/ghapp.fish
  PREFIX/share/man/man1/ghapp.1
  PREFIX/share/ghapp/install-manifest   (what --uninstall removes)
and, if no file is there yet, a commented config template (mode 0600) at the config path.
Running it again upgrades in place; nothing is duplicated.

Options:
  --prefix DIR      Install prefix: binaries go to DIR/bin, the rest under DIR/share
                    (default: ~/.local, i.e. ~/.local/bin; use /usr/local for everyone).
  --config PATH     Where the config template is written if missing
                    (default: $GHAPP_CONFIG, else $XDG_CONFIG_HOME/ghapp/config.toml,
                    else ~/.config/ghapp/config.toml). An existing file is never touched.
  --from DIR        Install the binaries already built in DIR (e.g. target/release)
                    instead of building.
  --no-build        Same as --from <target dir>/release (its git-credential-ghapp is the
                    dynamically linked one; a plain run builds and installs the static one).
  --no-demo         Neither build nor install github-emulator (`ghapp demo` then cannot run;
                    ghapp itself never needs it). With --from, a DIR without it implies this.
  --systemd         Also install the systemd user units (ghapp.socket, ghapp.service) into
                    ~/.config/systemd/user and enable the socket; skipped with a message when
                    `systemctl --user` is not available (the unit files are still installed).
  --configure-git   Also run `ghapp configure --global`: credential.helper ghapp and
                    credential.useHttpPath true for each host of the config's Apps
                    (https://github.com when there are none).
  --uninstall       Remove exactly what earlier runs installed under --prefix (undoing
                    --systemd and --configure-git too). Your config file is kept.
  -h, --help        This text.

Environment: CARGO (cargo command), CARGO_TARGET_DIR (where cargo builds), SYSTEMCTL
(systemctl command), XDG_CONFIG_HOME (where the user units and the config go).
EOF
}

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

prefix="${HOME:?HOME is not set}/.local"
config_path=""
from_dir=""
helper_source="" # the static helper, when this run built one
no_build=0
with_demo=1
with_systemd=0
configure_git=0
uninstall=0

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --config) [ $# -ge 2 ] || die "--config needs a path"; config_path="$2"; shift 2 ;;
    --config=*) config_path="${1#*=}"; shift ;;
    --from) [ $# -ge 2 ] || die "--from needs a directory"; from_dir="$2"; shift 2 ;;
    --from=*) from_dir="${1#*=}"; shift ;;
    --no-build) no_build=1; shift ;;
    --no-demo) with_demo=0; shift ;;
    --systemd) with_systemd=1; shift ;;
    --configure-git) configure_git=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

[ -n "$prefix" ] || die "--prefix is empty"
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
prefix="${prefix%/}"
readonly bindir="$prefix/bin"
readonly sharedir="$prefix/share"
readonly manifest="$sharedir/ghapp/install-manifest"
readonly systemd_user_dir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"

if [ -z "$config_path" ]; then
  if [ -n "${GHAPP_CONFIG:-}" ]; then
    config_path="$GHAPP_CONFIG"
  else
    config_path="${XDG_CONFIG_HOME:-$HOME/.config}/ghapp/config.toml"
  fi
fi

systemctl="${SYSTEMCTL:-systemctl}"
have_user_systemd() {
  command -v "$systemctl" >/dev/null 2>&1 && "$systemctl" --user show-environment >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# Uninstall: the manifest lists every file we created, one "kind path" per line.
# ---------------------------------------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
  if [ ! -f "$manifest" ]; then
    say "nothing to uninstall under $prefix (no $manifest)"
    exit 0
  fi
  if grep -q '^git-configured ' "$manifest" && [ -x "$bindir/ghapp" ]; then
    while read -r _ args; do
      # shellcheck disable=SC2086 # args are the recorded flags, split on purpose
      if "$bindir/ghapp" unconfigure $args; then
        say "removed ghapp from git's config (ghapp unconfigure $args)"
      else
        say "warning: 'ghapp unconfigure $args' failed; check 'git config --global --list'"
      fi
    done < <(grep '^git-configured ' "$manifest")
  fi
  units=()
  while read -r _ path; do units+=("$(basename "$path")"); done < <(grep '^unit ' "$manifest" || true)
  if [ ${#units[@]} -gt 0 ] && have_user_systemd; then
    "$systemctl" --user disable --now "${units[@]}" >/dev/null 2>&1 || true
  fi
  while read -r kind path; do
    case "$kind" in
      file|unit)
        if [ -e "$path" ] || [ -L "$path" ]; then rm -f -- "$path"; say "removed $path"; fi ;;
    esac
  done <"$manifest"
  if [ ${#units[@]} -gt 0 ] && have_user_systemd; then
    "$systemctl" --user daemon-reload || true
  fi
  rm -f -- "$manifest"
  # Remove only directories that are now empty (never the user's own files).
  for dir in "$sharedir/ghapp" "$sharedir/man/man1" "$sharedir/man" \
             "$sharedir/bash-completion/completions" "$sharedir/bash-completion" \
             "$sharedir/zsh/site-functions" "$sharedir/zsh" \
             "$sharedir/fish/vendor_completions.d" "$sharedir/fish" "$sharedir" "$bindir" \
             "$systemd_user_dir"; do
    rmdir -- "$dir" 2>/dev/null || true
  done
  if [ -e "$config_path" ]; then
    say "kept your config $config_path (delete it yourself if you no longer need it)"
  fi
  say "uninstalled"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Build (or take prebuilt binaries).
# ---------------------------------------------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-$repo_dir/target}"
if [ "$no_build" = 1 ] && [ -z "$from_dir" ]; then
  from_dir="$target_dir/release"
fi
prebuilt=0
[ -z "$from_dir" ] || prebuilt=1
if [ "$prebuilt" = 0 ]; then
  cargo="${CARGO:-cargo}"
  # rustup installs cargo here; a shell started before the install does not have it on PATH yet.
  if ! command -v "$cargo" >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    cargo="${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
  fi
  if ! command -v "$cargo" >/dev/null 2>&1; then
    die "cargo not found. Install Rust (1.88 or newer) with https://rustup.rs:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y && . \"\$HOME/.cargo/env\"
(Debian 12's own cargo package is too old for this workspace.)"
  fi
  say "building in release mode (the first build takes a few minutes)"
  packages=(-p ghapp -p git-credential-ghapp)
  [ "$with_demo" = 0 ] || packages+=(-p "$demo_binary")
  (cd "$repo_dir" && "$cargo" build --release --locked "${packages[@]}")
  from_dir="$target_dir/release"
  # git starts the helper for every fetch and push: on Linux it is installed statically
  # linked (musl, else glibc) (no dynamic loader: docs/benchmarks-findings.md, "Where the helper's time goes"). Anything
  # that stops the static build keeps the dynamic one built above.
  if static_helper="$(CARGO="$cargo" "$repo_dir/scripts/build-static-helper.sh")"; then
    helper_source="$static_helper"
    say "git-credential-ghapp: statically linked ($static_helper)"
  else
    say "git-credential-ghapp: keeping the dynamically linked build (see the reason above)"
  fi
fi
for bin in "${binaries[@]}"; do
  [ -x "$from_dir/$bin" ] || die "$from_dir/$bin is missing or not executable"
done
if [ "$prebuilt" = 1 ]; then
  say "git-credential-ghapp: installing $from_dir's as it is (run without --from/--no-build for the static build)"
fi
to_install=("${binaries[@]}")
if [ "$with_demo" = 1 ]; then
  if [ -x "$from_dir/$demo_binary" ]; then
    to_install+=("$demo_binary")
  else
    say "note: no $from_dir/$demo_binary, so 'ghapp demo' will not run (build it with: cargo build --release -p $demo_binary)"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Install. Every file goes through a temp file and a rename: a running daemon keeps its old
# binary, a failed step leaves no half-written file.
# ---------------------------------------------------------------------------------------------
installed=()
if [ -f "$manifest" ]; then
  while IFS= read -r line; do installed+=("$line"); done <"$manifest"
fi
record() { installed+=("$1 $2"); }

put_file() { # put_file MODE SOURCE DEST
  local mode="$1" source="$2" dest="$3" tmp
  mkdir -p -- "$(dirname "$dest")"
  tmp="$(mktemp "$(dirname "$dest")/.ghapp-install.XXXXXX")"
  if ! { cat -- "$source" >"$tmp" && chmod "$mode" "$tmp" && mv -f -- "$tmp" "$dest"; }; then
    rm -f -- "$tmp"
    die "cannot install $dest"
  fi
}

put_output() { # put_output DEST COMMAND... : installs COMMAND's stdout as DEST (mode 0644)
  local dest="$1" tmp
  shift
  mkdir -p -- "$(dirname "$dest")"
  tmp="$(mktemp "$(dirname "$dest")/.ghapp-install.XXXXXX")"
  if ! { "$@" >"$tmp" && chmod 0644 "$tmp" && mv -f -- "$tmp" "$dest"; }; then
    rm -f -- "$tmp"
    die "cannot generate $dest with: $*"
  fi
}

for bin in "${to_install[@]}"; do
  built="$from_dir/$bin"
  [ "$bin" != git-credential-ghapp ] || [ -z "$helper_source" ] || built="$helper_source"
  put_file 0755 "$built" "$bindir/$bin"
  record file "$bindir/$bin"
  say "installed $bindir/$bin"
done
ghapp="$bindir/ghapp"
"$ghapp" --version >/dev/null || die "the installed $ghapp does not run"

put_file 0755 "$repo_dir/scripts/ghapp-gh-refresh.sh" "$bindir/ghapp-gh-refresh.sh"
record file "$bindir/ghapp-gh-refresh.sh"
put_file 0755 "$repo_dir/scripts/container-entrypoint.sh" "$sharedir/ghapp/container-entrypoint.sh"
record file "$sharedir/ghapp/container-entrypoint.sh"
say "installed $bindir/ghapp-gh-refresh.sh and $sharedir/ghapp/container-entrypoint.sh"

put_output "$sharedir/bash-completion/completions/ghapp" "$ghapp" completions bash
record file "$sharedir/bash-completion/completions/ghapp"
put_output "$sharedir/zsh/site-functions/_ghapp" "$ghapp" completions zsh
record file "$sharedir/zsh/site-functions/_ghapp"
put_output "$sharedir/fish/vendor_completions.d/ghapp.fish" "$ghapp" completions fish
record file "$sharedir/fish/vendor_completions.d/ghapp.fish"
put_output "$sharedir/man/man1/ghapp.1" "$ghapp" man
record file "$sharedir/man/man1/ghapp.1"
say "installed completions (bash, zsh, fish) and the man page under $sharedir"

# The config template: written once, never overwritten, never removed by --uninstall.
if [ -e "$config_path" ]; then
  say "kept the existing config $config_path"
else
  (
    umask 077
    mkdir -p -- "$(dirname "$config_path")"
    cat >"$config_path" <<'EOF'
# ghapp configuration. Every key is documented in docs/configuration.md.
# Check it with `ghapp doctor`; reload a running daemon with `systemctl --user reload ghapp`
# (or SIGHUP).

[daemon]
# socket = "/run/user/1000/ghapp/ghapp.sock"  # default: $XDG_RUNTIME_DIR/ghapp/ghapp.sock
# min_ttl = "30m"           # never hand out a token with less life left than this
# socket_group = "ghapp"    # let this group connect (socket mode 0660), e.g. for containers
# allow_uids = [1000]       # who may connect (default: the daemon's own uid and root)
# allow_gids = []
# audit_log = "/var/log/ghapp/audit.jsonl"

# One [[app]] per GitHub App. Create the App (Contents: read & write, Metadata: read), generate a
# private key, install it on your organization or repositories, then fill in:
#
# [[app]]
# name = "acme-bot"                       # a label for logs, status and errors
# host = "github.com"                     # the git host it serves (GHES: "ghe.example.com")
# app_id = 123456                         # from the App's settings page
# # client_id = "Iv23li..."               # may be used instead of, or with, app_id
# private_key_file = "/home/you/.config/ghapp/acme-bot.pem"   # absolute path; chmod 600
# # owners = ["acme"]                     # only these accounts
# # permissions = { contents = "write", pull_requests = "write" }  # ceiling for every token
EOF
  )
  say "wrote a config template to $config_path (mode 0600): add your App, then run 'ghapp doctor'"
fi

# ---------------------------------------------------------------------------------------------
# Optional: systemd user units.
# ---------------------------------------------------------------------------------------------
if [ "$with_systemd" = 1 ]; then
  unit_sources=()
  for dir in "$repo_dir/scripts/systemd/user" "$repo_dir/scripts/systemd"; do
    if [ -d "$dir" ]; then
      for unit in "$dir"/ghapp.service "$dir"/ghapp.socket; do
        [ -f "$unit" ] && unit_sources+=("$unit")
      done
      [ ${#unit_sources[@]} -eq 0 ] || break
    fi
  done
  if [ ${#unit_sources[@]} -eq 0 ]; then
    say "warning: no systemd user units found under $repo_dir/scripts/systemd; skipped --systemd"
  else
    unit_names=()
    for unit in "${unit_sources[@]}"; do
      name="$(basename "$unit")"
      dest="$systemd_user_dir/$name"
      tmp_unit="$(mktemp)"
      # Point ExecStart at the binary just installed, wherever the unit expected it.
      sed -E "s#^(ExecStart=)[^ ]*/ghapp( |\$)#\\1$ghapp\\2#" "$unit" >"$tmp_unit"
      put_file 0644 "$tmp_unit" "$dest"
      rm -f -- "$tmp_unit"
      record unit "$dest"
      unit_names+=("$name")
      say "installed $dest"
    done
    if have_user_systemd; then
      "$systemctl" --user daemon-reload
      if [[ " ${unit_names[*]} " == *" ghapp.socket "* ]]; then
        "$systemctl" --user enable --now ghapp.socket
        say "enabled ghapp.socket: the daemon starts on the first connection"
      else
        "$systemctl" --user enable --now ghapp.service
        say "enabled ghapp.service"
      fi
    else
      say "systemctl --user is not available here (no user session bus); unit files are installed,"
      say "  enable them later from a login session: systemctl --user enable --now ghapp.socket"
      say "  (a system-wide daemon uses the system units: see README.md, 'Run the daemon')"
    fi
  fi
fi

# ---------------------------------------------------------------------------------------------
# Optional: git configuration.
# ---------------------------------------------------------------------------------------------
if [ "$configure_git" = 1 ]; then
  # `ghapp configure` prints one line per host URL: "git (--global): URL: what it wrote", or
  # "git (--global): URL already uses ghapp; nothing changed". Only URLs it changed are recorded,
  # so --uninstall takes back exactly those and never a setup the user made by hand.
  configure_output="$("$ghapp" configure --global)" || die "ghapp configure --global failed"
  while IFS= read -r configured; do
    [ -n "$configured" ] || continue
    say "$configured"
    case "$configured" in
      *" already uses ghapp"*) continue ;;
      "git (--global): "*)
        rest="${configured#git (--global): }"
        url="${rest%%: *}"
        record git-configured "--global --host $url" ;;
    esac
  done <<<"$configure_output"
fi

# The manifest: sorted, de-duplicated, so re-running never grows it.
mkdir -p -- "$(dirname "$manifest")"
printf '%s\n' "${installed[@]}" | sort -u >"$manifest.tmp"
mv -f -- "$manifest.tmp" "$manifest"

case ":$PATH:" in
  *":$bindir:"*) ;;
  *) say "note: $bindir is not on your PATH; add it (e.g. in ~/.profile): export PATH=\"$bindir:\$PATH\"" ;;
esac
say "done: $("$ghapp" --version). Next: edit $config_path, then 'ghapp doctor'."
