#!/usr/bin/env bash
# The main job end to end on this machine alone (loopback only):
#   1. a source registry seeded with a synthetic DKP edition (channels, versions, platform
#      images, security databases, modules, installer);
#   2. pull: one DKP tag of it into d8-format tar bundles (then an interrupted-and-resumed
#      pull of the default version range, chunked);
#   3. verify the bundle offline (as after carrying it across the air gap), then check the
#      target registry like the cluster does: before the push it is missing everything;
#   4. push: the bundle, straight from its tars, into a TLS + password registry that plays
#      registry.<PUBLIC_DOMAIN>/system/deckhouse (rw user), then again (nothing to send);
#      then the completeness check again: all items are there;
#   5. copy: an image registry to registry into the same target;
#   6. a differential update of that site (the target, on v1.69.3) to v1.70.1: its inventory
#      taken with push's credentials, `pull --against` it (only the blobs the site lacks; the
#      full v1.70.1 bundle pulled too, to compare sizes), verify offline, push, then the
#      completeness check for v1.70.1 (about 30 s more than the steps before it).
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

step "seed the source with a synthetic DKP edition"
"$bin/dkp-dev" seed-edition "$SRC_HOST/deckhouse/ee" --insecure --base-layer 40M --image-layer 2M

step "plan a pull of v1.69.3 (--dry-run transfers nothing)"
"$bin/dkp-mirror" pull "$work/bundle" --source "$SRC_HOST/deckhouse/ee" --insecure --deckhouse-tag v1.69.3 --dry-run | tail -4

step "pull v1.69.3 into d8-format bundles"
"$bin/dkp-mirror" pull "$work/bundle" --source "$SRC_HOST/deckhouse/ee" --insecure --deckhouse-tag v1.69.3 --progress plain
ls -l "$work/bundle"
(cd "$work/bundle" && sha256sum -c --quiet SHA256SUMS && echo "SHA256SUMS: all files OK")
echo "platform.tar holds:"; tar -tf "$work/bundle/platform.tar" | grep index.json | sed 's/^/  /'
echo "package-nginx-tools.tar holds:"; tar -tf "$work/bundle/package-nginx-tools.tar" | grep index.json | sed 's/^/  /'
echo "VEX attestations beside the platform images (short tags in platform.tar's index.json):"
tar -xOf "$work/bundle/platform.tar" index.json | grep -o 'sha256-[0-9a-f]*\.att' | sort -u | sed 's/^/  /'

step "pull the default version range in 50 MB chunks, interrupted after 2 s, then resumed"
timeout -s INT 2 "$bin/dkp-mirror" pull "$work/range" --source "$SRC_HOST/deckhouse/ee" --insecure -c 0.05 --no-modules --progress none || echo "(interrupted: exit $?)"
ls "$work/range" | sed 's/^/  /'
"$bin/dkp-mirror" pull "$work/range" --source "$SRC_HOST/deckhouse/ee" --insecure -c 0.05 --no-modules --progress none
ls "$work/range" | sed 's/^/  /'

step "verify the bundle offline: checksums, every blob's digest, every reference and required image"
"$bin/dkp-mirror" verify "$work/bundle"

export D8_MIRROR_REGISTRY_LOGIN=rw D8_MIRROR_REGISTRY_PASSWORD="$password"
step "check the target like the cluster's RegistryContainsRequiredImages does (before the push)"
"$bin/dkp-mirror" verify "$work/bundle" --registry "$DST_HOST/system/deckhouse" --ca-file "$DST_CA" || echo "(exit $?: images missing, as expected before the push)"

step "push the v1.69.3 bundle into the target with the rw user, straight from the tars"
"$bin/dkp-mirror" push "$work/bundle" "$DST_HOST/system/deckhouse" --ca-file "$DST_CA" --progress plain

step "what the cluster will ask the registry for resolves"
"$bin/dkp-mirror" inspect "$DST_HOST/system/deckhouse:v1.69.3" --ca-file "$DST_CA" -u rw -p "$password" | head -2
"$bin/dkp-mirror" tags "$DST_HOST/system/deckhouse/release-channel" --ca-file "$DST_CA" -u rw -p "$password" | tr '\n' ' '; echo
"$bin/dkp-mirror" tags "$DST_HOST/system/deckhouse/modules" --ca-file "$DST_CA" -u rw -p "$password" | tr '\n' ' '; echo
"$bin/dkp-mirror" tags "$DST_HOST/system/deckhouse/packages/nginx-tools" --ca-file "$DST_CA" -u rw -p "$password" | tr '\n' ' '; echo

step "check the target again: complete"
"$bin/dkp-mirror" verify "$work/bundle" --registry "$DST_HOST/system/deckhouse" --ca-file "$DST_CA"

step "push again: everything is there, no blob bytes are sent"
"$bin/dkp-mirror" push "$work/bundle" "$DST_HOST/system/deckhouse" --ca-file "$DST_CA" --progress none

step "seed an image for the registry-to-registry copy: an index of 2 platform images"
"$bin/dkp-dev" seed-image "$SRC_HOST/demo/app:v1" --insecure --platforms 2 --layers 48M,6M,200K,2K

step "copy it into the target, streamed registry to registry"
"$bin/dkp-mirror" copy "$SRC_HOST/demo/app:v1" "$DST_HOST/copied/image" \
  --src-insecure --dest-ca-file "$DST_CA" --progress plain

step "inspect it in the target (the digest matches the source's)"
"$bin/dkp-mirror" inspect "$SRC_HOST/demo/app:v1" --insecure | head -1 | sed 's/^/source /'
printf '%s' "$password" | "$bin/dkp-mirror" inspect "$DST_HOST/copied/image:v1" \
  --ca-file "$DST_CA" -u rw --password-stdin

step "copy again: every blob is already there, nothing is sent"
"$bin/dkp-mirror" copy "$SRC_HOST/demo/app:v1" "$DST_HOST/copied/image" \
  --src-insecure --dest-ca-file "$DST_CA" --progress none

step "a wrong password: what failed and what to do, exit code 1"
set +e
D8_MIRROR_REGISTRY_PASSWORD=not-the-password "$bin/dkp-mirror" push "$work/bundle" \
  "$DST_HOST/system/deckhouse" --ca-file "$DST_CA" --progress none
echo "exit code: $?"
set -e

step "differential update: the site (the target) holds v1.69.3; take its inventory with push's credentials"
"$bin/dkp-mirror" inventory --registry "$DST_HOST/system/deckhouse" --ca-file "$DST_CA" -o "$work/site.inventory" --progress none
head -3 "$work/site.inventory" | sed 's/^/  /'

step "plan v1.70.1 against the site's inventory (--dry-run): what is left out"
"$bin/dkp-mirror" pull "$work/diff" --source "$SRC_HOST/deckhouse/ee" --insecure --deckhouse-tag v1.70.1 \
  --against "$work/site.inventory" --dry-run | tail -2

step "pull v1.70.1 against the inventory: every manifest, only the blobs the site lacks"
"$bin/dkp-mirror" pull "$work/diff" --source "$SRC_HOST/deckhouse/ee" --insecure --deckhouse-tag v1.70.1 \
  --against "$work/site.inventory" --progress none
ls "$work/diff" | sed 's/^/  /'

step "pull the full v1.70.1 bundle too, to compare sizes"
"$bin/dkp-mirror" pull "$work/full" --source "$SRC_HOST/deckhouse/ee" --insecure --deckhouse-tag v1.70.1 --progress none 2>"$work/full.err"
grep '^pulled' "$work/full.err"
# bundle_bytes DIR: bytes of every file an operator carries (tars, SHA256SUMS, left-out-blobs.inventory).
bundle_bytes() { find "$1" -maxdepth 1 -type f ! -name '.*' -printf '%s\n' | awk '{ t += $1 } END { printf "%d", t }'; }
diff_bytes=$(bundle_bytes "$work/diff"); full_bytes=$(bundle_bytes "$work/full")
awk -v d="$diff_bytes" -v f="$full_bytes" 'BEGIN { printf "differential v1.70.1 bundle: %d bytes (%.1f MiB); full v1.70.1 bundle: %d bytes (%.1f MiB); %.1f%% of it\n", d, d / 1048576, f, f / 1048576, d / f * 100 }'

step "verify the differential bundle offline: what it carries checks out, what it leaves out is listed"
"$bin/dkp-mirror" verify "$work/diff"

step "push the differential bundle into the site (it checks first that the site holds every left-out blob)"
"$bin/dkp-mirror" push "$work/diff" "$DST_HOST/system/deckhouse" --ca-file "$DST_CA" --progress none

step "check the site: v1.70.1 complete, left-out blobs included"
"$bin/dkp-mirror" verify "$work/diff" --registry "$DST_HOST/system/deckhouse" --ca-file "$DST_CA"
"$bin/dkp-mirror" inspect "$SRC_HOST/deckhouse/ee:v1.70.1" --insecure | head -1 | sed 's/^/source /'
"$bin/dkp-mirror" inspect "$DST_HOST/system/deckhouse:v1.70.1" --ca-file "$DST_CA" -u rw -p "$password" | head -1 | sed 's/^/site   /'

step "done"
