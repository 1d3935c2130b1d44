#!/usr/bin/env bash
# The RustSec advisory database for `cargo deny check advisories`, without network access.
#
# cargo-deny normally clones https://github.com/rustsec/advisory-db; CI cannot reach that
# host. So the advisories come from a snapshot of that repository, cut down to the crates of
# our Cargo.lock, kept OUTSIDE this repository (docs/supply-chain.md says where and why):
#
#   scripts/advisory-db.sh extract SNAPSHOT_GIT_DIR OUT_DIR [MORE_CARGO_LOCKS...]
#       From a clone (bare or not) of rustsec/advisory-db, copy crates/<name>/*.md for every
#       crate named in Cargo.lock (both workspace crates: the daemon and the emulator), and in
#       any further Cargo.lock given (branches about to be merged), into OUT_DIR, with the database's LICENSE.txt (CC0-1.0), SNAPSHOT (commit and its date)
#       and crates.txt (every crate name looked up, advisories or not).
#
#   scripts/advisory-db.sh prepare SUBSET_DIR DB_ROOT
#       Lay SUBSET_DIR out the way cargo-deny 0.20 opens a database under `--offline`:
#       DB_ROOT/advisory-db-3157b0e258782691/crates/... (the directory name is cargo-deny's
#       hash of the URL in deny.toml's db-urls), plus .git/FETCH_HEAD dated at the snapshot's
#       commit: cargo-deny takes that file's time as the database's age and refuses a database
#       older than deny.toml's maximum-db-staleness. Prints the snapshot date and age, and the
#       crates of Cargo.lock the subset does not cover (added after it was extracted).
#
#   scripts/advisory-db.sh find
#       Print the subset directory CI uses, if there is one: $PTP_ADVISORY_DB.
#
# Snapshot in use when this was written: rustsec/advisory-db bf5c0d245a92 of 2026-08-21.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# cargo-deny's directory for https://github.com/rustsec/advisory-db (url_to_db_path in
# cargo-deny's src/advisories/helpers/db.rs: last path segment, XxHash64 of the URL).
DB_DIR_NAME="advisory-db-3157b0e258782691"

die() { echo "advisory-db.sh: $*" >&2; exit 1; }

# Crate names of our Cargo.lock and of any further lock files given.
lock_crates() { sed -n 's/^name = "\(.*\)"$/\1/p' "$root/Cargo.lock" "$@" | sort -u; }

extract() {
    local git_dir="$1" out="$2"
    shift 2
    git --git-dir="$git_dir" rev-parse --verify -q HEAD >/dev/null || die "$git_dir: not a git directory"
    [ -e "$out" ] && die "$out exists; give a new directory"
    mkdir -p "$out"
    local names paths=() n
    names="$(lock_crates "$@")"
    while read -r n; do
        if [ -n "$(git --git-dir="$git_dir" ls-tree --name-only HEAD "crates/$n")" ]; then
            paths+=("crates/$n")
        fi
    done <<<"$names"
    git --git-dir="$git_dir" archive --format=tar HEAD LICENSE.txt "${paths[@]}" | tar -x -C "$out"
    printf '%s\n' "$names" >"$out/crates.txt"
    {
        echo "source=rustsec/advisory-db"
        echo "commit=$(git --git-dir="$git_dir" rev-parse HEAD)"
        echo "date=$(git --git-dir="$git_dir" show -s --format=%cI HEAD)"
    } >"$out/SNAPSHOT"
    echo "advisory-db.sh: $(find "$out/crates" -name '*.md' 2>/dev/null | wc -l) advisories for" \
        "${#paths[@]} of $(wc -l <"$out/crates.txt") crates in Cargo.lock -> $out"
}

prepare() {
    local subset="$1" db_root="$2"
    [ -f "$subset/SNAPSHOT" ] || die "$subset/SNAPSHOT missing: not made by '$0 extract'"
    local date db
    date="$(sed -n 's/^date=//p' "$subset/SNAPSHOT")"
    db="$db_root/$DB_DIR_NAME"
    rm -rf "$db"
    mkdir -p "$db/.git"
    # A subset may have no advisory at all; cargo-deny wants the directory anyway.
    mkdir -p "$db/crates"
    if [ -d "$subset/crates" ]; then cp -R "$subset/crates/." "$db/crates/"; fi
    touch -d "$date" "$db/.git/FETCH_HEAD"
    local age=$((($(date +%s) - $(date -d "$date" +%s)) / 86400))
    echo "advisory database: rustsec/advisory-db $(sed -n 's/^commit=//p' "$subset/SNAPSHOT" | cut -c1-12)" \
        "of ${date%%T*} ($age days old), $(find "$db/crates" -name '*.md' | wc -l) advisories"
    local uncovered
    uncovered="$(lock_crates | comm -23 - <(sort -u "$subset/crates.txt") | tr '\n' ' ')"
    if [ -n "$uncovered" ]; then
        echo "advisory database: NOT COVERED (in Cargo.lock, not in the subset; refresh it," \
            "docs/supply-chain.md): $uncovered"
    fi
}

find_subset() {
    local d="${PTP_ADVISORY_DB:-}"
    [ -n "$d" ] && [ -f "$d/SNAPSHOT" ] && (cd "$d" && pwd)
}

case "${1:-}" in
    extract) [ $# -ge 3 ] || die "usage: $0 extract SNAPSHOT_GIT_DIR OUT_DIR [MORE_CARGO_LOCKS...]"
        shift; extract "$@" ;;
    prepare) [ $# -eq 3 ] || die "usage: $0 prepare SUBSET_DIR DB_ROOT"; prepare "$2" "$3" ;;
    find) find_subset ;;
    *) die "usage: $0 extract SNAPSHOT_GIT_DIR OUT_DIR [LOCKS...] | prepare SUBSET_DIR DB_ROOT | find" ;;
esac
