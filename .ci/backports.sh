#!/bin/sh
# Adds Debian bookworm-backports to apt's sources, using the archive this machine already uses
# for bookworm (its own apt configuration names the mirror; this script names none). Does
# nothing when backports is configured already.
set -eu
dir=/etc/apt/sources.list.d
if grep -rqs 'bookworm-backports' /etc/apt/sources.list "$dir"/*.list "$dir"/*.sources; then
  exit 0
fi
uri=""
# deb822 files: the URIs of a stanza whose Suites include plain "bookworm".
for f in "$dir"/*.sources; do
  [ -f "$f" ] || continue
  uri=$(awk '
    /^[[:space:]]*$/ { if (suite && uris != "") { print uris; exit } suite = 0; uris = ""; next }
    tolower($1) == "uris:" { uris = $2 }
    tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
    END { if (suite && uris != "") print uris }
  ' "$f" | head -n 1)
  [ -n "$uri" ] && break
done
# One-line files: "deb [options] URI bookworm main".
if [ -z "$uri" ]; then
  uri=$(cat /etc/apt/sources.list "$dir"/*.list 2>/dev/null |
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == "bookworm" && $(i-1) !~ /^\[/) { print $(i-1); exit } }' |
    head -n 1)
fi
if [ -z "$uri" ]; then
  echo "no Debian bookworm source in /etc/apt: add bookworm-backports to apt's sources by hand" >&2
  exit 1
fi
echo "deb $uri bookworm-backports main" > "$dir/bookworm-backports.list"
echo "added bookworm-backports from $uri"
