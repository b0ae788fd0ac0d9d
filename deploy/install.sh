#!/bin/sh
# Installs what webgpu-llm needs to serve, from the repository root it lives in. The README's
# set-up and deploy/Containerfile both run this script (tests/install_test.ts runs it in a
# clean copy of the repository, so the image's steps are tested without a container engine).
#
#   sh deploy/install.sh                        Deno and Bun from npm (when missing), Bun's
#                                               dependencies, Deno's npm imports cached
#   sh deploy/install.sh --system               also Mesa's lavapipe via apt (root; Debian bookworm)
#   sh deploy/install.sh --production           without devDependencies (the image)
set -eu
cd "$(dirname "$0")/.."
DENO_VERSION=2.9.6
BUN_VERSION=1.3.14
system=0
production=0
for arg in "$@"; do
  case "$arg" in
    --system) system=1 ;;
    --production) production=1 ;;
    *) echo "usage: sh deploy/install.sh [--system] [--production]" >&2; exit 2 ;;
  esac
done

if [ "$system" = 1 ]; then
  # lavapipe: WebGPU on the CPU where there is no GPU. Dawn (Bun) accepts it from Mesa 25 on,
  # which bookworm has in backports; a GPU's own Vulkan driver is used instead where present.
  sh .ci/backports.sh
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers libvulkan1
fi

# The runtimes, pinned, from npm.
missing=""
deno --version 2>/dev/null | grep -q "^deno $DENO_VERSION " || missing="$missing deno@$DENO_VERSION"
[ "$(bun --version 2>/dev/null)" = "$BUN_VERSION" ] || missing="$missing bun@$BUN_VERSION"
if [ -n "$missing" ]; then
  echo "installing$missing from npm"
  npm install -g --silent $missing
fi

# Bun's dependencies (Dawn's WebGPU through the webgpu package) into node_modules.
if [ "$production" = 1 ]; then
  bun install --frozen-lockfile --production
else
  bun install --frozen-lockfile
fi

# Deno fetches its npm: imports itself: cache those of the server and its Workers now, so it
# starts with --cached-only (no registry at run time). The two packages with install scripts
# (webgpu: Dawn for Bun; node-llama-cpp: the bench's peer, prebuilt binaries) need none under
# Deno: deno.json's allowScripts.deny lists them, which keeps Deno's "Ignored build scripts" box
# out of this output.
deno cache --frozen-lockfile serve.ts src/api/worker.ts src/server/tokenizer_worker.ts src/grammar/compile_worker.ts
