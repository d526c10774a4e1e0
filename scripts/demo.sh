#!/usr/bin/env bash
# The main job end to end on this machine alone (loopback only):
#   a source registry seeded with a synthetic image (a multi-arch index, as DKP's
#   platform images are), copied with dkp-mirror into a TLS + password registry that
#   plays registry.<PUBLIC_DOMAIN>/system/deckhouse, inspected there, then copied again
#   to show that nothing is sent twice.
# Later stages (pull into bundles, verify, push) join this script as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
ensure_packages "${BASE_PACKAGES[@]}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build"
swift build --product dkp-mirror 2>&1 | tail -1
swift build --product dkp-dev 2>&1 | tail -1
bin=$(swift build --show-bin-path)

work=$(mktemp -d /tmp/dkp-demo.XXXXXX)
cleanup() {
  scripts/registry.sh stop "$work/source" >/dev/null 2>&1 || true
  scripts/registry.sh stop "$work/target" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# read_env PREFIX FILE: KEY=VALUE lines from registry.sh into PREFIX_KEY variables.
read_env() {
  local key value
  while IFS='=' read -r key value; do printf -v "$1_$key" '%s' "$value"; done <"$2"
}

step "start a plain source registry and a TLS + htpasswd target registry"
scripts/registry.sh start "$work/source" >"$work/source.env"
read_env SRC "$work/source.env"
password=$(openssl rand -hex 16)
scripts/registry.sh start "$work/target" --tls --user "rw:$password" >"$work/target.env"
read_env DST "$work/target.env"
echo "source: $SRC_URL"
echo "target: $DST_URL (CA $DST_CA, user rw)"

step "seed the source: deckhouse/ee:v1.69.3 as an index of 2 platform images"
"$bin/dkp-dev" seed-image "$SRC_HOST/deckhouse/ee:v1.69.3" --insecure --platforms 2 --layers 48M,6M,200K,2K

step "copy it into the target, streamed registry to registry"
export D8_MIRROR_REGISTRY_LOGIN=rw D8_MIRROR_REGISTRY_PASSWORD="$password"
"$bin/dkp-mirror" copy "$SRC_HOST/deckhouse/ee:v1.69.3" "$DST_HOST/system/deckhouse" \
  --src-insecure --dest-ca-file "$DST_CA" --progress plain

step "inspect it in the target (the digest matches the source's)"
"$bin/dkp-mirror" inspect "$SRC_HOST/deckhouse/ee:v1.69.3" --insecure | head -1 | sed 's/^/source /'
printf '%s' "$password" | "$bin/dkp-mirror" inspect "$DST_HOST/system/deckhouse:v1.69.3" \
  --ca-file "$DST_CA" -u rw --password-stdin

step "copy again: every blob is already there, nothing is sent"
"$bin/dkp-mirror" copy "$SRC_HOST/deckhouse/ee:v1.69.3" "$DST_HOST/system/deckhouse" \
  --src-insecure --dest-ca-file "$DST_CA" --progress none

step "a wrong password is one clear line, exit code 1"
set +e
D8_MIRROR_REGISTRY_PASSWORD=not-the-password "$bin/dkp-mirror" copy "$SRC_HOST/deckhouse/ee:v1.69.3" \
  "$DST_HOST/system/deckhouse" --src-insecure --dest-ca-file "$DST_CA" --progress none
echo "exit code: $?"
set -e

step "done"
