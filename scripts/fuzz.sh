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
# testdata/fuzz/crashes/ (commit them: a test replays each). Seeds: testdata/fuzz/<harness>.
# Environment: FUZZ_TARGETS (space-separated subset), FUZZ_JOBS
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
CRASHES=testdata/fuzz/crashes
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dkp-fuzz-run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "building dkp-fuzz with -sanitize=fuzzer,address (first build takes several minutes)..." >&2
swift build -c debug --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address -Xswiftc -DDKP_FUZZ \
  --build-path "$BUILD" --product dkp-fuzz >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; exit 2; }
bin="$BUILD/debug/dkp-fuzz"

# --- seeds -------------------------------------------------------------------------------
# Seeds are committed in testdata/fuzz/<harness> (valid references, manifests, indexes,
# headers, small tars; see testdata/README.md); the tar harness also starts from every tar of
# testdata/bundles and testdata/hostile. A crash input is written to testdata/fuzz/crashes/,
# where the replay test (EndToEndTests/FuzzReplayTests) runs it on every test run.
SEEDS=testdata/fuzz
mkdir -p "$CRASHES"
for t in $TARGETS; do mkdir -p "$CORPUS/$t"; done
extra_seeds() {
  [ "$1" = tar ] || return 0
  mkdir -p "$WORK/tar-seeds"
  find testdata/bundles testdata/hostile -name '*.tar' | while read -r f; do cp "$f" "$WORK/tar-seeds/$(echo "$f" | tr / _)"; done
  echo "$WORK/tar-seeds"
}

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
    -artifact_prefix="$CRASHES/$t-" "$CORPUS/$t" "$SEEDS/$t" $(extra_seeds "$t") >"$log" 2>&1
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
