#!/usr/bin/env bash
# Runs the parsers that read outside input under libFuzzer + AddressSanitizer for a bounded
# time each, then prints a table: harness, runs executed, seconds, crashes.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# Harnesses (Sources/dkp-fuzz, picked by DKP_FUZZ_TARGET):
#   reference         Reference(parsing:) and Digest(parsing:)
#   manifest          ManifestDocument.parse (manifests and indexes, any announced content type)
#   layout-index      a layout's index.json inside a bundle tar, through BundleIndex.open
#   www-authenticate  AuthChallenge.parse
#   link              nextLink(fromLinkHeader:)
#   tar               a whole bundle tar through BundleIndex.open and TarReader
# The fuzz build lives in .build/fuzz (its own build path: the normal build is untouched);
# corpora grow across runs in .build/fuzz-corpus/<harness>, crash inputs land in
# .build/fuzz-crashes/. Seeds are generated here (valid references, manifests, indexes,
# headers, small tars). Environment: FUZZ_TARGETS (space-separated subset), FUZZ_JOBS
# (harnesses run at once, default 1). Exit status 1 when any harness crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
ensure_packages pkg-config libarchive-dev libzstd-dev librhash-dev libssl-dev

SECONDS_PER_TARGET=${1:-60}
TARGETS=${FUZZ_TARGETS:-reference manifest layout-index www-authenticate link tar}
JOBS=${FUZZ_JOBS:-1}
BUILD=.build/fuzz
CORPUS=.build/fuzz-corpus
CRASHES=.build/fuzz-crashes
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dkp-fuzz-run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "building dkp-fuzz with -sanitize=fuzzer,address (first build takes several minutes)..." >&2
swift build -c debug --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address -Xswiftc -DDKP_FUZZ \
  --build-path "$BUILD" --product dkp-fuzz >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; exit 2; }
bin="$BUILD/debug/dkp-fuzz"

# --- seeds -------------------------------------------------------------------------------
seeds="$WORK/seeds"
mkdir -p "$CRASHES"
for t in $TARGETS; do mkdir -p "$seeds/$t" "$CORPUS/$t"; done
hex_a=$(printf 'a%.0s' {1..64}); hex_b=$(printf 'b%.0s' {1..64}); hex_c=$(printf 'c%.0s' {1..64})
seed() { printf '%s' "$2" >"$seeds/$1/$3"; }
if [ -d "$seeds/reference" ]; then
  n=0
  for r in "registry.deckhouse.ru/deckhouse/ee:v1.69.3" "127.0.0.1:5000/system/deckhouse/modules/console@sha256:$hex_a" \
           "[::1]:5000/a/b:tag@sha256:$hex_b" "localhost/x" "h.io/a-b_c.d/e__f:V1.2.3-rc.1" "sha256:$hex_c" \
           "registry.example.com:443/deckhouse/ee/install-standalone:v1.70.1"; do
    seed reference "$r" "r$n"; n=$((n + 1))
  done
fi
manifest_body="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$hex_a\",\"size\":7023},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$hex_b\",\"size\":32654,\"annotations\":{\"k\":\"v\"}}],\"subject\":{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$hex_c\",\"size\":1},\"annotations\":{\"a\":\"b\"}}"
index_body="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$hex_a\",\"size\":528,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"sha256:$hex_b\",\"size\":529,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}}]}"
docker_body="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":\"sha256:$hex_a\",\"size\":1},\"layers\":[]}"
layout_index="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.layout.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$hex_a\",\"size\":528,\"annotations\":{\"io.deckhouse.image.short_tag\":\"v1.69.3\",\"org.opencontainers.image.ref.name\":\"registry.deckhouse.ru/deckhouse/ee:v1.69.3\"}}]}"
if [ -d "$seeds/manifest" ]; then
  # The first byte picks the announced content type (see Harness.contentTypes).
  seed manifest "$(printf '\001')$manifest_body" oci-manifest
  seed manifest "$(printf '\002')$index_body" oci-index
  seed manifest "$(printf '\003')$docker_body" docker-manifest
  seed manifest "$(printf '\005')$index_body" json-index
  seed manifest "$(printf '\007'){\"schemaVersion\":1,\"name\":\"a/b\",\"fsLayers\":[]}" schema1
fi
if [ -d "$seeds/layout-index" ]; then
  seed layout-index "$layout_index" layout
  seed layout-index "$index_body" index
  seed layout-index '{"schemaVersion":2,"manifests":[]}' empty
fi
if [ -d "$seeds/www-authenticate" ]; then
  seed www-authenticate 'Bearer realm="https://registry.deckhouse.ru/auth/token",service="Docker registry",scope="repository:deckhouse/ee:pull"' bearer
  seed www-authenticate 'Basic realm="Registry Realm"' basic
  seed www-authenticate 'Basic realm="x", Bearer realm="https://t/token",service=s,error="insufficient_scope"' two
  seed www-authenticate 'Bearer realm="a \"quoted\" realm, with commas"' escaped
fi
if [ -d "$seeds/link" ]; then
  seed link '</v2/deckhouse/ee/tags/list?n=100&last=v1.69.3>; rel="next"' next
  seed link '<https://r/v2/a/tags/list?last=b>; rel="prev", <https://r/v2/a/tags/list?last=z>; rel=next; type="x"' two
fi
if [ -d "$seeds/tar" ]; then
  # Small bundle tars as d8 and dkp-mirror write them: GNU format, a layout at the root and
  # one below, a long name, plus a PAX tar and a ustar one.
  tree="$WORK/tree"
  mkdir -p "$tree/blobs/sha256" "$tree/modules/console/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$tree/oci-layout"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$tree/modules/console/oci-layout"
  printf 'config' >"$tree/blobs/sha256/$(printf 'config' | sha256sum | cut -c1-64)"
  manifest="{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"sha256:$(printf 'config' | sha256sum | cut -c1-64)\",\"size\":6},\"layers\":[]}"
  mhex=$(printf '%s' "$manifest" | sha256sum | cut -c1-64)
  printf '%s' "$manifest" >"$tree/blobs/sha256/$mhex"
  printf '%s' "$manifest" >"$tree/modules/console/blobs/sha256/$mhex"
  index="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.layout.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$mhex\",\"size\":${#manifest},\"annotations\":{\"io.deckhouse.image.short_tag\":\"v1\"}}]}"
  printf '%s' "$index" >"$tree/index.json"
  printf '%s' "$index" >"$tree/modules/console/index.json"
  mkdir -p "$tree/extra/$(printf 'd%.0s' {1..60})/$(printf 'e%.0s' {1..60})"
  printf 'x' >"$tree/extra/$(printf 'd%.0s' {1..60})/$(printf 'e%.0s' {1..60})/long"
  (cd "$tree" && tar --format=gnu -cf "$seeds/tar/gnu.tar" oci-layout index.json blobs modules)
  (cd "$tree" && tar --format=gnu -cf "$seeds/tar/long.tar" oci-layout index.json blobs extra)
  (cd "$tree" && tar --format=pax -cf "$seeds/tar/pax.tar" ./oci-layout ./index.json ./blobs)
  (cd "$tree" && tar --format=ustar -cf "$seeds/tar/ustar.tar" modules)
fi

# Tokens that help the mutator reach deeper (JSON keys, media types, tar and header syntax).
dict="$WORK/dict"
cat >"$dict" <<'DICT'
"schemaVersion"
"mediaType"
"manifests"
"config"
"layers"
"digest"
"size"
"platform"
"annotations"
"subject"
"artifactType"
"imageLayoutVersion"
"application/vnd.oci.image.manifest.v1+json"
"application/vnd.oci.image.index.v1+json"
"application/vnd.oci.image.layout.v1+json"
"application/vnd.docker.distribution.manifest.list.v2+json"
"sha256:"
"index.json"
"oci-layout"
"blobs/sha256/"
"../"
"ustar"
"././@LongLink"
"Bearer"
"realm="
"service="
"scope="
"rel=\"next\""
"@sha256:"
"[::1]:"
DICT

# --- runs --------------------------------------------------------------------------------
run_one() {
  local t=$1 log="$WORK/$1.log" max_len=8192
  [ "$t" = tar ] && max_len=65536
  [ "$t" = reference ] && max_len=1024
  local start=$SECONDS
  set +e
  TMPDIR="$WORK" ASAN_OPTIONS=detect_leaks=0 DKP_FUZZ_TARGET="$t" "$bin" -max_total_time="$SECONDS_PER_TARGET" \
    -print_final_stats=1 -timeout=20 -rss_limit_mb=3072 -max_len=$max_len -dict="$dict" \
    -artifact_prefix="$CRASHES/$t-" "$CORPUS/$t" "$seeds/$t" >"$log" 2>&1
  local status=$?
  set -e
  local runs seconds crashes
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  seconds=$((SECONDS - start))
  crashes=$(grep -c -E '^==[0-9]+==ERROR|^SUMMARY: libFuzzer|deadly signal|invariant violated' "$log" || true)
  [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes=1
  echo "$t ${runs:-0} $seconds $crashes $status" >"$WORK/$t.result"
  if [ "$crashes" -ne 0 ]; then
    echo "--- $t crashed (status $status); the input is in $CRASHES/; the end of its log:" >&2
    grep -E 'ERROR|SUMMARY|invariant|Fatal error|artifact|Test unit written' "$log" | head -10 >&2
  fi
}

echo "fuzzing: ${SECONDS_PER_TARGET}s per harness ($TARGETS)" >&2
running=0
for t in $TARGETS; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n || true; running=$((running - 1)); fi
done
wait || true

printf '%-18s %14s %9s %9s %8s\n' harness runs seconds exec/s crashes
total_runs=0; total_crashes=0; total_seconds=0
for t in $TARGETS; do
  read -r name runs seconds crashes _ <"$WORK/$t.result"
  rate=$(( seconds > 0 ? runs / seconds : 0 ))
  printf '%-18s %14s %9s %9s %8s\n' "$name" "$runs" "$seconds" "$rate" "$crashes"
  total_runs=$((total_runs + runs)); total_crashes=$((total_crashes + crashes)); total_seconds=$((total_seconds + seconds))
done
printf '%-18s %14s %9s %9s %8s\n' total "$total_runs" "$total_seconds" "" "$total_crashes"
echo "corpora: $CORPUS ($(find "$CORPUS" -type f | wc -l) inputs kept)" >&2
[ "$total_crashes" -eq 0 ]
