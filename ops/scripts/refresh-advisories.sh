#!/usr/bin/env bash
# Refreshes the RustSec advisory snapshot the dependency check reads (node/tests/dependencies.rs):
# the build machines cannot reach GitHub, so the advisories of the crates Kizuna builds are
# vendored under ops/advisories/crates/, with the names of every crate the database has
# advisories for (ops/advisories/index.txt) so that a new dependency with advisories fails the
# check until the snapshot is refreshed.
#
#   git clone https://github.com/rustsec/advisory-db /tmp/advisory-db
#   ops/scripts/refresh-advisories.sh /tmp/advisory-db
#
# Run it before each release and whenever the check asks for it; commit the result.
set -euo pipefail

db="${1:?usage: refresh-advisories.sh ADVISORY_DB_CLONE}"
top="$(cd "$(dirname "$0")/../.." && pwd)"
out="$top/ops/advisories"
[ -d "$db/crates" ] || { echo "refresh-advisories: $db/crates is missing: not an advisory-db clone" >&2; exit 1; }

commit="$(git -C "$db" rev-parse HEAD)"
date="$(git -C "$db" log -1 --format=%cs)"
rm -rf "$out/crates"
mkdir -p "$out/crates"
ls "$db/crates" | sort >"$out/index.txt"
sed -n 's/^name = "\(.*\)"$/\1/p' "$top/Cargo.lock" | sort -u | while read -r name; do
  if [ -d "$db/crates/$name" ]; then
    cp -r "$db/crates/$name" "$out/crates/$name"
  fi
done
cat >"$out/SNAPSHOT" <<SNAP
https://github.com/rustsec/advisory-db
commit $commit
date $date
SNAP
echo "refresh-advisories: $(ls "$out/crates" | wc -l) crates of Cargo.lock have advisories (snapshot $date, ${commit:0:12})"
