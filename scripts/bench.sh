#!/usr/bin/env bash
# Benchmarks that print figures (never pass/fail), each next to a reference measured in the
# same run on the same machine:
#   1. SHA-256 throughput of the Streams hasher vs `openssl speed -evp sha256`;
#   2. `dkp-mirror copy` of a 1 GiB image vs `skopeo copy`, from a plain local registry
#      into fresh TLS + htpasswd registries (wall time, MB/s, peak RSS);
#   3. `dkp-mirror pull --deckhouse-tag` of a synthetic edition of about 2 GB (a big base
#      layer shared by every platform image, small per-image layers) vs `skopeo copy --all`
#      of the same references, one by one, into OCI layouts;
#   4. `dkp-mirror push` of that bundle into a fresh TLS + htpasswd registry vs `skopeo copy
#      --all` of the same references from the OCI layouts into another; then the same push
#      again (nothing new to send);
#   5. offline `verify` of the bundle vs `sha256sum` of its tars;
#   6. pull and push again at -j 1, 4, 8 and 16 (the default -j comes from this sweep).
# Wall time and peak RSS come from GNU time; "disk written" is the bytes the process dirtied
# in the page cache (its rusage block outputs x 512), i.e. what it asked the disk to store.
# Environment: BENCH_LAYERS (default 512M,256M,128M,64M,48M,16M: 1 GiB), BENCH_JOBS (8),
#   BENCH_BASE_LAYER (1600M), BENCH_IMAGE_LAYER (12M), BENCH_SWEEP ("1 4 8 16"; empty skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
ensure_packages "${BASE_PACKAGES[@]}" skopeo time jq

LAYERS=${BENCH_LAYERS:-512M,256M,128M,64M,48M,16M}
JOBS=${BENCH_JOBS:-8}

swift build -c release --product dkp-mirror 2>&1 | tail -1
swift build -c release --product dkp-dev 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)

work=$(mktemp -d /tmp/dkp-bench.XXXXXX)
cleanup() {
  for r in source ours theirs push-ours push-theirs sweep-1 sweep-4 sweep-8 sweep-16; do
    scripts/registry.sh stop "$work/$r" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
read_env() { local k v; while IFS='=' read -r k v; do printf -v "$1_$k" '%s' "$v"; done <"$2"; }

rows=()
row() { rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "$@")"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# 1. Hashing.
ours_sha=$("$bin/dkp-dev" hash-bench --total 4G)
openssl_sha=$(openssl speed -evp sha256 -bytes 1048576 -seconds 3 2>/dev/null | awk '/^sha256/ { v = $NF; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6 }')
row "SHA-256 MB/s (1 MiB updates)" "$ours_sha" "$openssl_sha" "$(ratio "$ours_sha" "$openssl_sha")"

# 2. Copy between registries.
scripts/registry.sh start "$work/source" >"$work/source.env"; read_env SRC "$work/source.env"
password=$(openssl rand -hex 12)
for r in ours theirs; do scripts/registry.sh start "$work/$r" --tls --user "rw:$password" >"$work/$r.env"; done
read_env OURS "$work/ours.env"; read_env THEIRS "$work/theirs.env"
echo "seeding a synthetic image with layers $LAYERS ..." >&2
"$bin/dkp-dev" seed-image "$SRC_HOST/bench/image:v1" --insecure --layers "$LAYERS" >/dev/null
bytes=$(awk -v list="$LAYERS" 'BEGIN { n = split(list, a, ","); for (i = 1; i <= n; i++) { v = a[i]; u = substr(v, length(v)); m = 1;
  if (u == "K") m = 1024; else if (u == "M") m = 1048576; else if (u == "G") m = 1073741824; if (m > 1) v = substr(v, 1, length(v) - 1); t += v * m } printf "%d", t }')

# timed LABEL CMD...: runs CMD under GNU time; sets T_WALL (s), T_RSS (MB) and T_WRITTEN (bytes).
timed() {
  local label=$1; shift
  /usr/bin/time -f '%e %M %O' -o "$work/time" "$@" >"$work/$label.out" 2>"$work/$label.err" || { cat "$work/$label.err" >&2; exit 1; }
  read -r T_WALL T_RSS_KB T_BLOCKS <"$work/time"
  T_RSS=$(awk -v k="$T_RSS_KB" 'BEGIN { printf "%.0f", k / 1024 }')
  T_WRITTEN=$((T_BLOCKS * 512))
}

mkdir -p "$work/certs"; cp "$THEIRS_CA" "$work/certs/ca.crt"
timed skopeo skopeo copy --src-tls-verify=false --dest-cert-dir "$work/certs" --dest-creds "rw:$password" \
  "docker://$SRC_HOST/bench/image:v1" "docker://$THEIRS_HOST/bench/image:v1"
skopeo_wall=$T_WALL; skopeo_rss=$T_RSS
export D8_MIRROR_REGISTRY_LOGIN=rw D8_MIRROR_REGISTRY_PASSWORD="$password"
timed ours "$bin/dkp-mirror" copy "$SRC_HOST/bench/image:v1" "$OURS_HOST/bench/image" \
  --src-insecure --dest-ca-file "$OURS_CA" -j "$JOBS" --progress none
ours_wall=$T_WALL; ours_rss=$T_RSS
ours_mbs=$(awk -v b="$bytes" -v t="$ours_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
skopeo_mbs=$(awk -v b="$bytes" -v t="$skopeo_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
mib=$((bytes / 1048576))
row "copy ${mib} MiB image: wall s" "$ours_wall" "$skopeo_wall" "$(ratio "$skopeo_wall" "$ours_wall")x"
row "copy ${mib} MiB image: MB/s" "$ours_mbs" "$skopeo_mbs" "$(ratio "$ours_mbs" "$skopeo_mbs")"
row "copy ${mib} MiB image: peak RSS MB" "$ours_rss" "$skopeo_rss" "$(ratio "$ours_rss" "$skopeo_rss")"

# 3. Pull into bundles.
"$bin/dkp-dev" seed-edition "$SRC_HOST/deckhouse/ee" --insecure --base-layer "${BENCH_BASE_LAYER:-1600M}" \
  --image-layer "${BENCH_IMAGE_LAYER:-12M}" >/dev/null
sync
pull_args=(--source "$SRC_HOST/deckhouse/ee" --insecure --deckhouse-tag v1.69.3 -j "$JOBS" --progress none)
"$bin/dkp-mirror" pull "$work/plan" "${pull_args[@]}" --dry-run --json >"$work/plan.json"
timed pull "$bin/dkp-mirror" pull "$work/bundle" "${pull_args[@]}" --json
pull_wall=$T_WALL; pull_rss=$T_RSS; pull_disk=$T_WRITTEN
bundle_bytes=$(du -cb "$work"/bundle/*.tar | tail -1 | cut -f1)
pull_written=$(jq .bytesTransferred "$work/pull.out")
# skopeo: every reference of the same plan, whole indexes included, into one OCI layout per repository.
jq -r '.references[] | [.repository, .reference, .layout, .shortTag] | join("|")' "$work/plan.json" | sort -u >"$work/refs.tsv"
cat >"$work/skopeo-all.sh" <<SKOPEO
#!/usr/bin/env bash
set -euo pipefail
while IFS='|' read -r repo ref layout short; do
  sep=":"; case "\$ref" in sha256:*) sep="@";; esac
  dir="$work/skopeo-oci/\${layout:-root}"; mkdir -p "\$dir"
  skopeo copy --all --quiet --src-tls-verify=false "docker://$SRC_HOST/\$repo\$sep\$ref" "oci:\$dir:\$short"
done <"$work/refs.tsv"
SKOPEO
chmod +x "$work/skopeo-all.sh"
timed skopeo-pull "$work/skopeo-all.sh"
skopeo_pull_wall=$T_WALL; skopeo_pull_rss=$T_RSS; skopeo_pull_disk=$T_WRITTEN
pull_mbs=$(awk -v b="$bundle_bytes" -v t="$pull_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
skopeo_pull_mbs=$(awk -v b="$bundle_bytes" -v t="$skopeo_pull_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
refs=$(wc -l <"$work/refs.tsv")
row "pull $((bundle_bytes / 1048576)) MiB, $refs refs: wall s" "$pull_wall" "$skopeo_pull_wall" "$(ratio "$skopeo_pull_wall" "$pull_wall")x"
row "pull: MB/s (bundle bytes / wall)" "$pull_mbs" "$skopeo_pull_mbs" "$(ratio "$pull_mbs" "$skopeo_pull_mbs")"
row "pull: peak RSS MB" "$pull_rss" "$skopeo_pull_rss" "-"
row "pull: bytes downloaded / bundle" "$(ratio "$pull_written" "$bundle_bytes")" "-" "-"
row "pull: disk written / bundle" "$(ratio "$pull_disk" "$bundle_bytes")" "$(ratio "$skopeo_pull_disk" "$bundle_bytes")" "-"

# 4. Push from the bundle.
for r in push-ours push-theirs; do scripts/registry.sh start "$work/$r" --tls --user "rw:$password" >"$work/$r.env"; done
read_env PO "$work/push-ours.env"; read_env PT "$work/push-theirs.env"
timed push "$bin/dkp-mirror" push "$work/bundle" "$PO_HOST/system/deckhouse" --ca-file "$PO_CA" -j "$JOBS" --progress none --json
push_wall=$T_WALL; push_rss=$T_RSS
timed repush "$bin/dkp-mirror" push "$work/bundle" "$PO_HOST/system/deckhouse" --ca-file "$PO_CA" -j "$JOBS" --progress none --json
repush_wall=$T_WALL
mkdir -p "$work/push-certs"; cp "$PT_CA" "$work/push-certs/ca.crt"
cat >"$work/skopeo-push.sh" <<SKOPEO
#!/usr/bin/env bash
set -euo pipefail
while IFS='|' read -r repo ref layout short; do
  dir="$work/skopeo-oci/\${layout:-root}"
  dest="$PT_HOST/system/deckhouse\${layout:+/\$layout}"
  skopeo copy --all --quiet --dest-cert-dir "$work/push-certs" --dest-creds "rw:$password" "oci:\$dir:\$short" "docker://\$dest:\$short"
done <"$work/refs.tsv"
SKOPEO
chmod +x "$work/skopeo-push.sh"
timed skopeo-push "$work/skopeo-push.sh"
skopeo_push_wall=$T_WALL; skopeo_push_rss=$T_RSS
push_mbs=$(awk -v b="$bundle_bytes" -v t="$push_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
skopeo_push_mbs=$(awk -v b="$bundle_bytes" -v t="$skopeo_push_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
row "push $((bundle_bytes / 1048576)) MiB bundle: wall s" "$push_wall" "$skopeo_push_wall" "$(ratio "$skopeo_push_wall" "$push_wall")x"
row "push: MB/s" "$push_mbs" "$skopeo_push_mbs" "$(ratio "$push_mbs" "$skopeo_push_mbs")"
row "push: peak RSS MB" "$push_rss" "$skopeo_push_rss" "-"
row "re-push, nothing new: wall s" "$repush_wall" "-" "$(ratio "$push_wall" "$repush_wall")x faster"

# 5. Offline verify of the bundle against sha256sum of the same tars (page cache warm).
cat "$work"/bundle/*.tar >/dev/null
timed verify "$bin/dkp-mirror" verify "$work/bundle" --json
verify_wall=$T_WALL; verify_rss=$T_RSS
timed sha256sum sha256sum "$work"/bundle/*.tar
sha_wall=$T_WALL
verify_mbs=$(awk -v b="$bundle_bytes" -v t="$verify_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
sha_mbs=$(awk -v b="$bundle_bytes" -v t="$sha_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
row "verify: bundle MB/s (wall)" "$verify_mbs" "$sha_mbs" "$(ratio "$verify_mbs" "$sha_mbs")"
row "verify: peak RSS MB" "$verify_rss" "-" "-"

# 6. The -j sweep: the same pull and push (into a fresh registry each time) at each -j.
sweep=()
for j in ${BENCH_SWEEP-1 4 8 16}; do
  rm -rf "$work/sweep-bundle"
  timed "pull-j$j" "$bin/dkp-mirror" pull "$work/sweep-bundle" --source "$SRC_HOST/deckhouse/ee" --insecure \
    --deckhouse-tag v1.69.3 -j "$j" --progress none --json
  sweep_pull=$T_WALL; sweep_pull_rss=$T_RSS
  scripts/registry.sh start "$work/sweep-$j" --tls --user "rw:$password" >"$work/sweep-$j.env"; read_env SW "$work/sweep-$j.env"
  timed "push-j$j" "$bin/dkp-mirror" push "$work/bundle" "$SW_HOST/system/deckhouse" --ca-file "$SW_CA" -j "$j" --progress none --json
  sweep_push=$T_WALL; sweep_push_rss=$T_RSS
  scripts/registry.sh stop "$work/sweep-$j" >/dev/null 2>&1 || true; rm -rf "$work/sweep-$j"
  sweep+=("$(printf '| %4s | %8s | %8s | %8s | %8s | %8s | %8s |' "$j" "$sweep_pull" \
    "$(awk -v b="$bundle_bytes" -v t="$sweep_pull" 'BEGIN { printf "%.0f", b / t / 1e6 }')" "$sweep_pull_rss" "$sweep_push" \
    "$(awk -v b="$bundle_bytes" -v t="$sweep_push" 'BEGIN { printf "%.0f", b / t / 1e6 }')" "$sweep_push_rss")")
done

# Both copies must have produced the same manifest digest.
d1=$("$bin/dkp-mirror" inspect "$OURS_HOST/bench/image:v1" --ca-file "$OURS_CA" -u rw -p "$password" | awk '/^digest/ {print $2}')
d2=$("$bin/dkp-mirror" inspect "$THEIRS_HOST/bench/image:v1" --ca-file "$THEIRS_CA" -u rw -p "$password" | awk '/^digest/ {print $2}')
d0=$("$bin/dkp-mirror" inspect "$SRC_HOST/bench/image:v1" --insecure | awk '/^digest/ {print $2}')
[ "$d1" = "$d0" ] || { echo "ERROR: dkp-mirror changed the manifest digest: source $d0, copy $d1" >&2; exit 1; }
[ "$d2" = "$d0" ] || echo "note: skopeo rewrote the manifest (source $d0, skopeo $d2)" >&2

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); skopeo $(skopeo --version | awk '{print $3}'); -j $JOBS"
printf '| %-34s | %12s | %12s | %8s |\n' "measure" "dkp-mirror" "reference" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------------" "--------------" "--------------" "----------"
printf '%s\n' "${rows[@]}"
echo "(reference: openssl for SHA-256, skopeo otherwise, sha256sum for verify; wall ratio = skopeo/ours, >1 means we are faster)"
if [ ${#sweep[@]} -gt 0 ]; then
  echo
  echo "dkp-mirror at each -j ($((bundle_bytes / 1048576)) MiB bundle; push into a fresh registry each time):"
  printf '| %4s | %8s | %8s | %8s | %8s | %8s | %8s |\n' "-j" "pull s" "MB/s" "RSS MB" "push s" "MB/s" "RSS MB"
  printf '|------|----------|----------|----------|----------|----------|----------|\n'
  printf '%s\n' "${sweep[@]}"
fi
