#!/bin/sh
# Fills .device/ (git-ignored, at the repository root) with what run.sh needs on the device
# machine, which reaches no network: Deno (the @deno/linux-x64-glibc npm package's binary,
# xz-compressed), a Deno cache of the npm packages the bench loads (the big ones the bench
# never imports on a GPU run, llama.cpp's binaries, Dawn for Bun, Playwright, Kubernetes
# models and OpenAI's client, kept as package.json stubs so Deno's install of the lockfile
# passes), and the Vulkan loader .deb. Everything that travels must stay under 64 MiB.
#
#   sh bench/device/prepare.sh            # build .device/
#   sh bench/device/prepare.sh --dry-run  # check an existing .device/ (sizes, deno runs, cache complete)
set -eu
root=$(git rev-parse --show-toplevel)
cd "$root"
dir=.device
deno_version=$(sed -n 's/^DENO_VERSION=//p' deploy/install.sh)
limit=$((64 * 1024 * 1024))

check() {
  fail=0
  for f in "$dir/deno.xz" "$dir/deno_dir.tar.xz"; do
    [ -s "$f" ] || { echo "missing $f"; fail=1; }
  done
  ls "$dir"/debs/libvulkan1_*.deb >/dev/null 2>&1 || { echo "missing $dir/debs/libvulkan1_*.deb"; fail=1; }
  [ $fail = 0 ] || exit 1
  tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  carried=$(du -sb "$dir" | cut -f1)
  total=$((tree + carried))
  echo "tracked files $((tree >> 20)) MiB + $dir $((carried >> 20)) MiB = $((total >> 20)) MiB (limit 64 MiB)"
  [ $total -lt $limit ] || { echo "over the 64 MiB the device call carries"; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  xz -dc "$dir/deno.xz" >"$tmp/deno" && chmod +x "$tmp/deno"
  "$tmp/deno" --version | head -1 | grep -q "^deno $deno_version " || { echo "the packed deno is not $deno_version"; exit 1; }
  mkdir "$tmp/deno_dir" && tar -xJf "$dir/deno_dir.tar.xz" -C "$tmp/deno_dir"
  # The whole import graph must load from the packed cache alone.
  DENO_DIR="$tmp/deno_dir" NO_COLOR=1 "$tmp/deno" run --cached-only -A --no-check=remote bench/main.ts --help >/dev/null ||
    { echo "bench/main.ts does not load from the packed cache"; exit 1; }
  echo "ok: deno $deno_version, npm cache complete for bench/main.ts, Vulkan loader $(basename "$dir"/debs/libvulkan1_*.deb)"
}

if [ "${1:-}" = "--dry-run" ]; then
  check
  exit 0
fi

exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx "/$dir/" "$exclude" 2>/dev/null || echo "/$dir/" >>"$exclude"
rm -rf "$dir" && mkdir -p "$dir/debs"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Deno, from its npm package (through npm, the ordinary client).
(cd "$tmp" && npm pack --silent "@deno/linux-x64-glibc@$deno_version" >/dev/null && tar -xzf deno-linux-x64-glibc-*.tgz)
xz -T0 -6 -c "$tmp/package/deno" >"$dir/deno.xz"

# The npm packages of the lockfile, in a fresh Deno cache; big packages the bench does not
# import on the device become package.json stubs.
DENO_DIR="$tmp/full" deno cache --no-check=remote bench/main.ts >/dev/null 2>&1
mkdir -p "$tmp/pruned"
(cd "$tmp/full" && find npm -name registry.json -o -path 'npm/*/*/[0-9]*/package.json' -o -path 'npm/*/@*/*/[0-9]*/package.json' | while read -r f; do
  mkdir -p "$tmp/pruned/$(dirname "$f")" && cp "$f" "$tmp/pruned/$f"
done)
(cd "$tmp/full/npm" && for host in *; do
  (cd "$host" && find . -mindepth 2 -maxdepth 3 -type d -name '[0-9]*' | while read -r v; do
    case "$v" in
      ./@node-llama-cpp/* | ./node-llama-cpp/* | ./webgpu/* | ./playwright-core/* | ./kubernetes-models/* | \
        ./@kubernetes-models/* | ./openai/* | ./@reflink/* | ./cmake-js/* | ./node-api-headers/*) ;;
      *) mkdir -p "$tmp/pruned/npm/$host/$v" && cp -r "$v/." "$tmp/pruned/npm/$host/$v/" ;;
    esac
  done)
done)
tar -cJf "$dir/deno_dir.tar.xz" -C "$tmp/pruned" npm

# The Vulkan loader (the device README's recipe; amd64 whatever this machine is).
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
# shellcheck disable=SC2086
apt-get $o update >/dev/null
# shellcheck disable=SC2086
(cd "$dir/debs" && apt-get $o download libvulkan1 >/dev/null)
check
