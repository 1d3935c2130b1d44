#!/usr/bin/env bash
# tests/systemd/root.sh - a Debian 12 (bookworm) root with systemd 252 booted as PID 1 in
# namespaces of its own, for tests of the installed package (tests/installed_service.rs).
# The recipe and its traps: tests/systemd/README.md.
#
# Usage (as root): tests/systemd/root.sh COMMAND [ARGS]
#   install         make sure the cached root tarball exists: debootstrap --variant=minbase
#                   --include=systemd,systemd-sysv,dbus, host-touching units masked, packed
#                   (about 90 s once; then nothing to do)
#   cached          exit status 0 when the cached tarball is there (nothing else)
#   fresh DIR       a fresh copy of the cached root in DIR (DIR is deleted first; seconds)
#   boot DIR [LOG]  boot systemd in DIR, in the foreground: pid, mount, uts, ipc and cgroup
#                   namespaces, its own cgroup, killed with the caller (pdeathsig). PID 1's
#                   console goes to LOG (default DIR.console). Prints nothing; the host pid
#                   of systemd is the child of this process (see pid)
#   pid LAUNCHER    the host pid of systemd started by the boot command whose pid is LAUNCHER
#   wait PID [SECS] wait until systemd (host pid PID) finished booting (default 60 s)
#   enter PID CMD.. run CMD inside the booted root (nsenter), e.g. systemctl status
#   stop PID        kill systemd (host pid PID) and with it the whole pid namespace; wait for
#                   it to be gone; remove the run's cgroup
#   uninstall       delete the cached tarball
#
# Environment:
#   SYSTEMD_ROOT_CACHE_DIR  where the tarball is kept between runs and clones (default
#                           ~/.cache/pbx-teams-presence, shared with tests/pbx)
#   SYSTEMD_ROOT_MIRROR     Debian mirror (default: this machine's main apt source)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
SUITE=bookworm
INCLUDE=systemd,systemd-sysv,dbus
# Units that would reach the host through the shared kernel, /dev, /sys or the console,
# or that only slow the boot down. Masked in the cached root.
MASKED=(
  systemd-sysctl.service systemd-remount-fs.service systemd-binfmt.service
  proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
  systemd-modules-load.service systemd-pstore.service systemd-firstboot.service
  systemd-hwdb-update.service systemd-tmpfiles-setup-dev.service kmod-static-nodes.service
  getty.target getty@.service serial-getty@.service console-getty.service
  container-getty@.service getty-static.service e2scrub_reap.service
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer
  systemd-tmpfiles-clean.timer systemd-logind.service systemd-random-seed.service
  systemd-journald-audit.socket sys-kernel-debug.mount sys-kernel-tracing.mount
  sys-kernel-config.mount sys-fs-fuse-connections.mount dev-hugepages.mount
)
# Bump when the way the root is prepared changes: old caches are then ignored.
RECIPE=1
RECIPE_KEY="$SUITE-r$RECIPE-$(printf '%s\n' "$INCLUDE" "${MASKED[@]}" | cksum | cut -d' ' -f1)"
CACHE_DIR="${SYSTEMD_ROOT_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/pbx-teams-presence}"
CACHE="$CACHE_DIR/systemd-root-$RECIPE_KEY.tar.zst"
MARKER=.systemd-root-prepared

log() { printf '[systemd-root] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (namespaces, mounts)"; }

apt_mirror() {
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -v -- '-security' | grep -oE 'https?://[^ ]+' | head -n 1)
  printf '%s' "${uri%/}"
}

ensure_host_tool() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2 on the host"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
}

# The root as debootstrap leaves it, then: units masked, the journal in memory only (and
# not reading the host's kernel log), no machine-specific leftovers.
prepare() { # DIR
  local r="$1" u mirror
  mirror="${SYSTEMD_ROOT_MIRROR:-$(apt_mirror)}"
  [ -n "$mirror" ] || die "no Debian mirror found in apt sources; set SYSTEMD_ROOT_MIRROR"
  ensure_host_tool debootstrap debootstrap
  log "debootstrap $SUITE (minbase, $INCLUDE) from $mirror"
  unshare --mount --propagation private -- \
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$r" "$mirror" \
    >"$r.debootstrap.log" 2>&1 \
    || { tail -20 "$r.debootstrap.log" >&2; die "debootstrap failed (log: $r.debootstrap.log)"; }
  for u in "${MASKED[@]}"; do ln -sfn /dev/null "$r/etc/systemd/system/$u"; done
  mkdir -p "$r/etc/systemd/journald.conf.d"
  printf '[Journal]\nStorage=volatile\nReadKMsg=no\n' >"$r/etc/systemd/journald.conf.d/90-test.conf"
  echo "deb $mirror $SUITE main" >"$r/etc/apt/sources.list"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/archives/*.deb
  echo "$RECIPE_KEY; systemd $(chroot "$r" dpkg-query -W -f '${Version}' systemd); $(date -u +%FT%TZ)" \
    >"$r/$MARKER"
}

cmd_install() {
  need_root
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.systemd-root.lock"
  flock 8
  if [ -f "$CACHE" ]; then
    log "cached: $CACHE"
    return 0
  fi
  ensure_host_tool zstd zstd
  local t0 work
  t0=$(now)
  work=$(mktemp -d "$CACHE_DIR/systemd-root.XXXXXX")
  prepare "$work/root"
  log "debootstrap and preparation: $(since "$t0") s"
  tar --numeric-owner -cpf "$CACHE.tmp.$$" -C "$work/root" --one-file-system -I 'zstd -T0 -3' .
  mv "$CACHE.tmp.$$" "$CACHE"
  rm -rf --one-file-system "$work"
  log "packed $CACHE ($(du -h "$CACHE" | cut -f1)) in $(since "$t0") s in all"
}

cmd_fresh() { # DIR
  need_root
  local dir="${1:?fresh needs a directory}" t0
  [ -f "$CACHE" ] || die "no cached root at $CACHE; run: $SELF install"
  t0=$(now)
  rm -rf --one-file-system "$dir"
  mkdir -p "$dir"
  tar --numeric-owner -xpf "$CACHE" -C "$dir" -I zstd
  [ -f "$dir/$MARKER" ] || die "$CACHE holds no prepared root; delete it and install again"
  log "fresh root in $dir in $(since "$t0") s"
}

# The cgroup2 hierarchy of the host: /sys/fs/cgroup itself (unified) or its unified/ (hybrid).
cgroup2_base() {
  local d
  for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    if [ "$(stat -fc %T "$d" 2>/dev/null)" = cgroup2fs ]; then printf '%s' "$d"; return 0; fi
  done
  die "no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"
}

# Empty cgroups left by an earlier run of this root (the namespace's processes are gone).
remove_cgroup() { # DIR
  local cg="$1"
  [ -d "$cg" ] || return 0
  find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
}

cmd_boot() { # DIR [LOG]
  need_root
  local dir console base cg
  dir="$(realpath "${1:?boot needs a directory}")"
  console="${2:-$dir.console}"
  [ -f "$dir/$MARKER" ] || die "$dir is no prepared root; run: $SELF fresh $dir"
  : >"$console"
  base=$(cgroup2_base)
  cg="$base/pbx-teams-presence-systemd-$(printf '%s' "$dir" | cksum | cut -d' ' -f1)"
  remove_cgroup "$cg"
  mkdir -p "$cg"
  echo $$ >"$cg/cgroup.procs"
  # setpriv: killed when the caller dies; unshare --kill-child: systemd killed when unshare
  # dies; the pid namespace ends with its PID 1.
  exec setpriv --pdeathsig KILL unshare --pid --fork --kill-child --mount --uts --ipc \
    --cgroup --propagation private /bin/sh "$HERE/boot.sh" "$dir" "$console"
}

cmd_pid() { # LAUNCHER
  local l="${1:?pid needs the launcher pid}" c
  c=$(cat /proc/"$l"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . | head -n 1) || true
  [ -n "$c" ] || die "process $l has no child (is it root.sh boot?)"
  printf '%s\n' "$c"
}

in_ns() { # PID CMD...
  local p="$1"; shift
  nsenter -t "$p" -m -p -u -i -C -r -w env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

cmd_wait() { # PID [SECS]
  need_root
  local p="${1:?wait needs the systemd pid}" secs="${2:-60}" state t0
  t0=$(now)
  local deadline=$(( $(date +%s) + secs ))
  while :; do
    kill -0 "$p" 2>/dev/null || die "systemd (pid $p) is gone"
    state=$(in_ns "$p" systemctl is-system-running 2>/dev/null) || true
    case "$state" in
      running|degraded) break ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || die "systemd not booted after ${secs}s (state: ${state:-none})"
    sleep 0.1
  done
  log "booted ($state) in $(since "$t0") s"
  if [ "$state" = degraded ]; then in_ns "$p" systemctl --failed --no-legend >&2 || true; fi
}

cmd_enter() { # PID CMD...
  need_root
  local p="${1:?enter needs the systemd pid}"; shift
  in_ns "$p" "$@"
}

cmd_stop() { # PID
  need_root
  local p="${1:?stop needs the systemd pid}" cg="" _
  if [ "$(cat /proc/"$p"/comm 2>/dev/null)" != systemd ]; then
    log "pid $p is not systemd (gone already?)"
    return 0
  fi
  cg=$(sed -n 's/^0:://p' /proc/"$p"/cgroup 2>/dev/null) || true
  kill -KILL "$p" 2>/dev/null || true
  for _ in $(seq 100); do [ -e /proc/"$p" ] || break; sleep 0.05; done
  # The run's cgroup (the namespace's root, one level above init.scope and system.slice).
  if [ -n "$cg" ]; then
    cg="$(cgroup2_base)${cg%/init.scope}"
    case "$cg" in */pbx-teams-presence-systemd-*) ;; *) cg="" ;; esac
  fi
  if [ -n "$cg" ]; then
    for _ in $(seq 100); do remove_cgroup "$cg"; [ -d "$cg" ] || break; sleep 0.05; done
  fi
  log "stopped (pid $p)"
}

cmd_uninstall() {
  need_root
  rm -f "$CACHE"
  log "removed $CACHE"
}

main() {
  local c="${1:-}"
  [ $# -gt 0 ] && shift
  case "$c" in
    install)   cmd_install ;;
    cached)    [ -f "$CACHE" ] ;;
    fresh)     cmd_fresh "$@" ;;
    boot)      cmd_boot "$@" ;;
    pid)       cmd_pid "$@" ;;
    wait)      cmd_wait "$@" ;;
    enter)     cmd_enter "$@" ;;
    stop)      cmd_stop "$@" ;;
    uninstall) cmd_uninstall ;;
    *) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'
       [ -z "$c" ] || [ "$c" = help ] || [ "$c" = -h ] || [ "$c" = --help ] || exit 2 ;;
  esac
}

main "$@"
