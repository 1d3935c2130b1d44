#!/bin/sh
# tests/systemd/boot.sh ROOT CONSOLE - run by root.sh boot inside fresh pid, mount, uts, ipc
# and cgroup namespaces (unshare --propagation private): makes ROOT the root of the mount
# namespace and execs systemd in it as PID 1. Not meant to be run by hand.
#   ROOT     the prepared Debian root (root.sh fresh)
#   CONSOLE  a file PID 1's console output goes to (the boot log)
set -eu
R="$1"
CONSOLE="$2"
# pivot_root needs ROOT to be a mount point; private, so nothing below propagates back.
mount --bind "$R" "$R"
mount --make-private "$R"
cd "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
# PID 1 writes to the console: to our log file, never to the host's terminal.
mount --bind "$CONSOLE" "$R/dev/console"
# Our own cgroup tree: the cgroup namespace's root is the cgroup root.sh made for this run,
# and a cgroup2 mount made here shows that subtree only. The host's /sys/fs/cgroup (a bind
# under $R/sys) is covered, never remounted.
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
mkdir -p "$R/oldroot"
pivot_root . oldroot
umount -l /oldroot
# LoadCredential= and the hardened units' mount namespaces need / shared; the mounts are
# private to this namespace, so the peer groups made here have no member outside it.
mount --make-rshared /
# container= empty: systemd must not believe it runs in a container (it would skip the step
# above). Its own messages go to the journal, or the console (the log file) before journald.
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin container= \
  /lib/systemd/systemd --system --log-target=journal --show-status=yes
