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
#      again (nothing new to send); then the registry's floor for it: the bundle's largest
#      blob uploaded alone by curl (one stream, which no client can split);
#   4c. the same pull and push on an edition whose base layer is small (160M), so that no
#      one blob decides the push;
#   5. offline `verify` of the bundle vs `sha256sum` of its tars;
#   6. pull and push again at -j 1, 4, 8 and 16 (the default -j comes from this sweep);
#   7. a WAN: the same kind of pinned pull through a proxy that adds 40 ms to every round trip
#      and caps each connection at 8 MB/s and the link at 40 MB/s, ours against skopeo one
#      reference at a time (as d8 and operators' scripts do); then ours killed (-9) halfway
#      and run again, with the bytes both runs moved on the wire; then the push of that bundle
#      into a TLS registry behind the same kind of WAN, uploads paced as well;
#   8. push of the bundle through an Ingress (scripts/ingress.sh: Debian's nginx with TLS and
#      HTTP/2 in front of a TLS registry, as ingress-nginx sets it up), with request buffering
#      on (nginx's default) and off, ours against skopeo (buffering on): wall and peak RSS;
#   9. only with BENCH_SCALE=N (seeding takes about 2 minutes per 1,000): memory at scale, a
#      pinned platform pull of an edition whose controller lists N more digest images (they
#      share one config and layer, so it is the plan, not the data, that grows): peak RSS;
#  10. bytes shipped for the update v1.69.3 -> v1.70.1 of a site holding v1.69.3: the full
#      v1.70.1 bundle, the differential one (`pull --against` the site's inventory) and an
#      unpinned `pull --since-version v1.69.3` (d8's way), with their ratio to the full bundle;
#      then verify, push and verify --registry of the differential bundle.
# Pull and push are fair: `sync` before every timed run, each tool twice in A B B A order,
# the best of each kept (both figures are printed, so the noise shows).
# Wall time and peak RSS come from GNU time; "disk written" is the bytes the process dirtied
# in the page cache (its rusage block outputs x 512), i.e. what it asked the disk to store.
# Environment: BENCH_LAYERS (default 512M,256M,128M,64M,48M,16M: 1 GiB), BENCH_JOBS (8),
#   BENCH_BASE_LAYER (1600M), BENCH_IMAGE_LAYER (12M), BENCH_FLAT (1; 0 skips 4c),
#   BENCH_FLAT_BASE_LAYER (160M), BENCH_SWEEP ("1 4 8 16"; empty skips it),
#   BENCH_WAN (1; 0 skips section 7), BENCH_WAN_BASE_LAYER (128M), BENCH_INGRESS (1; 0 skips 8),
#   BENCH_SCALE (0: skips 9; 10000 is the figure issue 11 asks for), BENCH_DIFF (1; 0 skips 10;
#   `only` seeds the edition and runs section 10 alone, about 3 minutes).
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
  for r in source ours theirs push-ours-1 push-ours-2 push-theirs-1 push-theirs-2 sweep-1 sweep-4 sweep-8 sweep-16 \
           ingress-on ingress-off ingress-skopeo wan-push-ours wan-push-theirs scale diff-site \
           floor-1 floor-2 flat-1 flat-2 flat-3 flat-4; do
    scripts/registry.sh stop "$work/$r" >/dev/null 2>&1 || true
    scripts/ingress.sh stop "$work/$r-nginx" >/dev/null 2>&1 || true
  done
  for pid in "${wan_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
read_env() { local k v; while IFS='=' read -r k v; do printf -v "$1_$k" '%s' "$v"; done <"$2"; }

rows=()
wan_pids=()
row() { rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "$@")"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# timed LABEL CMD...: runs CMD under GNU time (after a sync, so no run pays for the one before
# it); sets T_WALL (s), T_RSS (MB) and T_WRITTEN (bytes).
timed() {
  local label=$1; shift
  sync
  /usr/bin/time -f '%e %M %O' -o "$work/time" "$@" >"$work/$label.out" 2>"$work/$label.err" || { cat "$work/$label.err" >&2; exit 1; }
  read -r T_WALL T_RSS_KB T_BLOCKS <"$work/time"
  T_RSS=$(awk -v k="$T_RSS_KB" 'BEGIN { printf "%.0f", k / 1024 }')
  T_WRITTEN=$((T_BLOCKS * 512))
}

# 4c (called from section 4). An edition whose base layer is small (BENCH_FLAT_BASE_LAYER,
# 160M), so that no one blob's stream decides the push: pull and push, ours against skopeo's
# pull into OCI layouts and push from them, each tool twice in A B B A order, the best kept,
# every push into a fresh TLS registry.
bench_flat() {
  echo "seeding an edition with a ${BENCH_FLAT_BASE_LAYER:-160M} base layer ..." >&2
  "$bin/dkp-dev" seed-edition "$SRC_HOST/deckhouse/flat" --insecure --base-layer "${BENCH_FLAT_BASE_LAYER:-160M}" \
    --image-layer "${BENCH_IMAGE_LAYER:-12M}" >/dev/null
  local args=(--source "$SRC_HOST/deckhouse/flat" --insecure --deckhouse-tag v1.69.3 -j "$JOBS" --progress none)
  "$bin/dkp-mirror" pull "$work/flat-plan" "${args[@]}" --dry-run --json >"$work/flat-plan.json"
  jq -r '.references[] | [.repository, .reference, .layout, .shortTag] | join("|")' "$work/flat-plan.json" | sort -u >"$work/flat-refs.tsv"
  local script
  for script in skopeo-all skopeo-push; do
    sed -e "s|$work/refs.tsv|$work/flat-refs.tsv|; s|$work/skopeo-oci|$work/flat-skopeo-oci|g" "$work/$script.sh" >"$work/flat-$script.sh"
    chmod +x "$work/flat-$script.sh"
  done
  local who pull="" skopeo_pull="" push="" skopeo_push="" pushes=() skopeo_pushes=() rss="" n=0
  for who in ours skopeo skopeo ours; do
    if [ "$who" = ours ]; then
      rm -rf "$work/flat-bundle"
      timed flat-pull "$bin/dkp-mirror" pull "$work/flat-bundle" "${args[@]}"
      best pull "$T_WALL"
    else
      timed flat-skopeo-pull "$work/flat-skopeo-all.sh"
      best skopeo_pull "$T_WALL"
    fi
  done
  for who in ours skopeo skopeo ours; do
    n=$((n + 1))
    scripts/registry.sh start "$work/flat-$n" --tls --user "rw:$password" >"$work/flat-$n.env"; read_env FP "$work/flat-$n.env"
    if [ "$who" = ours ]; then
      timed flat-push "$bin/dkp-mirror" push "$work/flat-bundle" "$FP_HOST/system/deckhouse" --ca-file "$FP_CA" -j "$JOBS" --progress none
      best push "$T_WALL"; pushes+=("$T_WALL"); rss=$T_RSS
    else
      mkdir -p "$work/flat-certs-$n"; cp "$FP_CA" "$work/flat-certs-$n/ca.crt"
      timed flat-skopeo-push "$work/flat-skopeo-push.sh" "$FP_HOST" "$work/flat-certs-$n"
      best skopeo_push "$T_WALL"; skopeo_pushes+=("$T_WALL")
    fi
    scripts/registry.sh stop "$work/flat-$n" >/dev/null 2>&1 || true; rm -rf "$work/flat-$n"
  done
  local mib=$(( $(du -cb "$work"/flat-bundle/*.tar | tail -1 | cut -f1) / 1048576 ))
  row "base ${BENCH_FLAT_BASE_LAYER:-160M}: pull $mib MiB, wall s" "$pull" "$skopeo_pull" "$(ratio "$skopeo_pull" "$pull")x"
  row "base ${BENCH_FLAT_BASE_LAYER:-160M}: push, wall s" "$push" "$skopeo_push" "$(ratio "$skopeo_push" "$push")x"
  row "  push: both runs, wall s" "${pushes[*]}" "${skopeo_pushes[*]}" "-"
  row "  push: peak RSS MB" "$rss" "-" "-"
  rm -rf "$work/flat-bundle" "$work/flat-skopeo-oci"
}

# 10. Bytes shipped for the update v1.69.3 -> v1.70.1 of a site (a TLS + htpasswd registry
# pushed from the pinned v1.69.3 bundle): the full v1.70.1 bundle, the differential bundle
# (`pull --against` the site's inventory) and the d8 way, an unpinned pull with `--since-version
# v1.69.3` (a pinned tag with --since-version is refused). Bytes are every file of the bundle directory
# an operator carries (tars, SHA256SUMS, left-out-blobs.inventory). Then the differential bundle
# is verified, pushed into the site and the site checked complete (verify --registry).
# Sets diff_rows. Uses $SRC_HOST/deckhouse/ee and the v1.69.3 bundle $work/bundle of section 3;
# with BENCH_DIFF=only it seeds and pulls them itself, then runs nothing else.
diff_rows=()
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
dir_bytes() { find "$1" -maxdepth 1 -type f ! -name '.*' -printf '%s\n' | awk '{ t += $1 } END { printf "%d", t }'; }
bench_diff() {
  local args=(--source "$SRC_HOST/deckhouse/ee" --insecure -j "$JOBS" --progress none)
  if [ ! -d "$work/bundle" ]; then
    echo "pulling the v1.69.3 bundle the site is built from ..." >&2
    "$bin/dkp-mirror" pull "$work/bundle" "${args[@]}" --deckhouse-tag v1.69.3 2>"$work/diff-old.err" || { cat "$work/diff-old.err" >&2; exit 1; }
  fi
  echo "10: a site on v1.69.3, its inventory, the v1.70.1 bundles ..." >&2
  scripts/registry.sh start "$work/diff-site" --tls --user "rw:$password" >"$work/diff-site.env"; read_env SITE "$work/diff-site.env"
  local site=(--ca-file "$SITE_CA" -u rw -p "$password")
  timed diff-site-push "$bin/dkp-mirror" push "$work/bundle" "$SITE_HOST/system/deckhouse" "${site[@]}" -j "$JOBS" --progress none
  timed diff-inventory "$bin/dkp-mirror" inventory --registry "$SITE_HOST/system/deckhouse" "${site[@]}" -o "$work/site.inventory" --progress none
  local inventory_wall=$T_WALL inventory_bytes; inventory_bytes=$(stat -c %s "$work/site.inventory")
  "$bin/dkp-mirror" pull "$work/diff-since" "${args[@]}" --since-version v1.69.3 --dry-run --json >"$work/diff-since-plan.json"
  local since_versions; since_versions=$(jq -r '.versions | join(" ")' "$work/diff-since-plan.json")
  timed diff-full "$bin/dkp-mirror" pull "$work/diff-full" "${args[@]}" --deckhouse-tag v1.70.1
  local full_wall=$T_WALL full_bytes; full_bytes=$(dir_bytes "$work/diff-full")
  # What the site lacks, from the full bundle's own entries: every blobs/sha256/<hex> entry of
  # each tar whose digest the inventory lists neither as a manifest nor as a blob.
  local lacks
  lacks=$(for t in "$work"/diff-full/*.tar; do tar -tvf "$t" | awk -v tar="${t##*/}" '$6 ~ /blobs\/sha256\/[0-9a-f]+$/ {
      n = split($6, p, "/"); print tar, "sha256:" p[n], $3 }'; done \
    | awk 'NR == FNR { if ($1 == "blob" || $1 == "manifest") have[$2] = 1; next }
           !($2 in have) && !(($1, $2) in seen) { seen[$1, $2] = 1; t += $3 } END { printf "%d", t }' "$work/site.inventory" -)
  timed diff-pull "$bin/dkp-mirror" pull "$work/diff-bundle" "${args[@]}" --deckhouse-tag v1.70.1 --against "$work/site.inventory"
  local diff_wall=$T_WALL diff_bytes; diff_bytes=$(dir_bytes "$work/diff-bundle")
  timed diff-since "$bin/dkp-mirror" pull "$work/diff-since" "${args[@]}" --since-version v1.69.3
  local since_wall=$T_WALL since_bytes; since_bytes=$(dir_bytes "$work/diff-since")
  rm -rf "$work/diff-since" "$work/diff-full"
  timed diff-verify "$bin/dkp-mirror" verify "$work/diff-bundle"
  timed diff-push "$bin/dkp-mirror" push "$work/diff-bundle" "$SITE_HOST/system/deckhouse" "${site[@]}" -j "$JOBS" --progress none
  local push_wall=$T_WALL
  timed diff-check "$bin/dkp-mirror" verify "$work/diff-bundle" --registry "$SITE_HOST/system/deckhouse" "${site[@]}"
  diff_rows+=("$(printf '| %-52s | %13s | %9s | %7s | %6s |' "full v1.70.1 bundle (--deckhouse-tag v1.70.1)" "$full_bytes" "$(mib "$full_bytes")" "1.00" "$full_wall")")
  diff_rows+=("$(printf '| %-52s | %13s | %9s | %7s | %6s |' "differential (--deckhouse-tag v1.70.1 --against)" "$diff_bytes" "$(mib "$diff_bytes")" "$(ratio "$diff_bytes" "$full_bytes")" "$diff_wall")")
  diff_rows+=("$(printf '| %-52s | %13s | %9s | %7s | %6s |' "--since-version v1.69.3 (unpinned, d8's way)" "$since_bytes" "$(mib "$since_bytes")" "$(ratio "$since_bytes" "$full_bytes")" "$since_wall")")
  diff_rows+=("$(printf '| %-52s | %13s | %9s | %7s | %6s |' "  entries of the full bundle the site lacks" "$lacks" "$(mib "$lacks")" "$(ratio "$lacks" "$full_bytes")" "-")")
  diff_rows+=("$(printf '| %-52s | %13s | %9s | %7s | %6s |' "  site inventory file" "$inventory_bytes" "$(mib "$inventory_bytes")" "-" "$inventory_wall")")
  local since_summary; since_summary=$(grep -m1 '^  platform:' "$work/diff-since.err" | sed 's/^ *//')
  diff_notes=("--since-version v1.69.3 (no --deckhouse-tag): versions $since_versions (${since_summary:-?}), with modules, packages, security databases and installer as a range pull has them."
              "entries the site lacks: blobs/sha256 entries of the full v1.70.1 tars whose digest the site's inventory does not list (per tar); the differential bundle carries $((diff_bytes - lacks)) bytes more (every manifest, index.json, tar headers, SHA256SUMS, the left-out list)."
              "the differential bundle verified offline, pushed into the site in $push_wall s, and verify --registry found the site complete.")
}
print_diff() {
  [ ${#diff_rows[@]} -gt 0 ] || return 0
  echo
  echo "Update v1.69.3 -> v1.70.1 of a site pushed from the v1.69.3 bundle: bytes carried across the gap (one run each, -j $JOBS):"
  printf '| %-52s | %13s | %9s | %7s | %6s |\n' "bundle" "bytes" "MiB" "/ full" "pull s"
  printf '|%s|%s|%s|%s|%s|\n' "------------------------------------------------------" "---------------" "-----------" "---------" "--------"
  printf '%s\n' "${diff_rows[@]}"
  printf '%s\n' "${diff_notes[@]}"
}

if [ "${BENCH_DIFF:-1}" = only ]; then
  scripts/registry.sh start "$work/source" >"$work/source.env"; read_env SRC "$work/source.env"
  password=$(openssl rand -hex 12)
  echo "seeding a synthetic edition (base layer ${BENCH_BASE_LAYER:-1600M}, image layers ${BENCH_IMAGE_LAYER:-12M}) ..." >&2
  "$bin/dkp-dev" seed-edition "$SRC_HOST/deckhouse/ee" --insecure --base-layer "${BENCH_BASE_LAYER:-1600M}" \
    --image-layer "${BENCH_IMAGE_LAYER:-12M}" >/dev/null
  bench_diff
  echo
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  print_diff
  exit 0
fi

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
# skopeo: every reference of the same plan, whole indexes included, into one OCI layout per repository.
jq -r '.references[] | [.repository, .reference, .layout, .shortTag] | join("|")' "$work/plan.json" | sort -u >"$work/refs.tsv"
cat >"$work/skopeo-all.sh" <<SKOPEO
#!/usr/bin/env bash
set -euo pipefail
rm -rf "$work/skopeo-oci"
while IFS='|' read -r repo ref layout short; do
  sep=":"; case "\$ref" in sha256:*) sep="@";; esac
  dir="$work/skopeo-oci/\${layout:-root}"; mkdir -p "\$dir"
  skopeo copy --all --quiet --src-tls-verify=false "docker://$SRC_HOST/\$repo\$sep\$ref" "oci:\$dir:\$short"
done <"$work/refs.tsv"
SKOPEO
chmod +x "$work/skopeo-all.sh"
# best VAR VALUE: VAR becomes the smaller of its value (if any) and VALUE.
best() { local current=${!1:-}; if [ -z "$current" ] || awk -v a="$2" -v b="$current" 'BEGIN { exit !(a < b) }'; then printf -v "$1" '%s' "$2"; fi; }
pull_wall=""; skopeo_pull_wall=""; pull_walls=(); skopeo_pull_walls=()
for who in ours skopeo skopeo ours; do
  if [ "$who" = ours ]; then
    rm -rf "$work/bundle"
    timed pull "$bin/dkp-mirror" pull "$work/bundle" "${pull_args[@]}" --json
    best pull_wall "$T_WALL"; pull_walls+=("$T_WALL"); pull_rss=$T_RSS; pull_disk=$T_WRITTEN
  else
    timed skopeo-pull "$work/skopeo-all.sh"
    best skopeo_pull_wall "$T_WALL"; skopeo_pull_walls+=("$T_WALL"); skopeo_pull_rss=$T_RSS; skopeo_pull_disk=$T_WRITTEN
  fi
done
bundle_bytes=$(du -cb "$work"/bundle/*.tar | tail -1 | cut -f1)
pull_written=$(jq .bytesTransferred "$work/pull.out")
pull_mbs=$(awk -v b="$bundle_bytes" -v t="$pull_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
skopeo_pull_mbs=$(awk -v b="$bundle_bytes" -v t="$skopeo_pull_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
refs=$(wc -l <"$work/refs.tsv")
row "pull $((bundle_bytes / 1048576)) MiB, $refs refs: wall s" "$pull_wall" "$skopeo_pull_wall" "$(ratio "$skopeo_pull_wall" "$pull_wall")x"
row "pull: MB/s (bundle bytes / wall)" "$pull_mbs" "$skopeo_pull_mbs" "$(ratio "$pull_mbs" "$skopeo_pull_mbs")"
row "pull: both runs, wall s" "${pull_walls[*]}" "${skopeo_pull_walls[*]}" "-"
row "pull: peak RSS MB" "$pull_rss" "$skopeo_pull_rss" "-"
row "pull: bytes downloaded / bundle" "$(ratio "$pull_written" "$bundle_bytes")" "-" "-"
row "pull: disk written / bundle" "$(ratio "$pull_disk" "$bundle_bytes")" "$(ratio "$skopeo_pull_disk" "$bundle_bytes")" "-"

# 4. Push from the bundle: each run into a fresh registry.
for r in push-ours-1 push-ours-2 push-theirs-1 push-theirs-2; do scripts/registry.sh start "$work/$r" --tls --user "rw:$password" >"$work/$r.env"; done
read_env PO1 "$work/push-ours-1.env"; read_env PO2 "$work/push-ours-2.env"
read_env PT1 "$work/push-theirs-1.env"; read_env PT2 "$work/push-theirs-2.env"
cat >"$work/skopeo-push.sh" <<SKOPEO
#!/usr/bin/env bash
set -euo pipefail
host=\$1 certs=\$2
while IFS='|' read -r repo ref layout short; do
  dir="$work/skopeo-oci/\${layout:-root}"
  dest="\$host/system/deckhouse\${layout:+/\$layout}"
  skopeo copy --all --quiet --dest-cert-dir "\$certs" --dest-creds "rw:$password" "oci:\$dir:\$short" "docker://\$dest:\$short"
done <"$work/refs.tsv"
SKOPEO
chmod +x "$work/skopeo-push.sh"
for n in 1 2; do mkdir -p "$work/push-certs-$n"; v="PT${n}_CA"; cp "${!v}" "$work/push-certs-$n/ca.crt"; done
push_wall=""; skopeo_push_wall=""; push_walls=(); skopeo_push_walls=(); round_ours=0; round_theirs=0
for who in ours skopeo skopeo ours; do
  if [ "$who" = ours ]; then
    round_ours=$((round_ours + 1)); h="PO${round_ours}_HOST"; c="PO${round_ours}_CA"
    timed push "$bin/dkp-mirror" push "$work/bundle" "${!h}/system/deckhouse" --ca-file "${!c}" -j "$JOBS" --progress none --json
    best push_wall "$T_WALL"; push_walls+=("$T_WALL"); push_rss=$T_RSS
  else
    round_theirs=$((round_theirs + 1)); h="PT${round_theirs}_HOST"
    timed skopeo-push "$work/skopeo-push.sh" "${!h}" "$work/push-certs-$round_theirs"
    best skopeo_push_wall "$T_WALL"; skopeo_push_walls+=("$T_WALL"); skopeo_push_rss=$T_RSS
  fi
done
timed repush "$bin/dkp-mirror" push "$work/bundle" "$PO1_HOST/system/deckhouse" --ca-file "$PO1_CA" -j "$JOBS" --progress none --json
repush_wall=$T_WALL
push_mbs=$(awk -v b="$bundle_bytes" -v t="$push_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
skopeo_push_mbs=$(awk -v b="$bundle_bytes" -v t="$skopeo_push_wall" 'BEGIN { printf "%.0f", b / t / 1e6 }')
row "push $((bundle_bytes / 1048576)) MiB bundle: wall s" "$push_wall" "$skopeo_push_wall" "$(ratio "$skopeo_push_wall" "$push_wall")x"
row "push: MB/s" "$push_mbs" "$skopeo_push_mbs" "$(ratio "$push_mbs" "$skopeo_push_mbs")"
row "push: both runs, wall s" "${push_walls[*]}" "${skopeo_push_walls[*]}" "-"
row "push: peak RSS MB" "$push_rss" "$skopeo_push_rss" "-"
row "re-push, nothing new: wall s" "$repush_wall" "-" "$(ratio "$push_wall" "$repush_wall")x faster"

# 4b. The registry's floor for that push: the bundle's largest blob uploaded alone by curl (one
# POST, one streamed PATCH, one PUT) into a fresh TLS registry, twice, the best kept. One upload
# is one stream, which distribution decrypts, hashes and writes on one goroutine, and OCI chunks
# go in order, so a push of the bundle takes about this long whoever the client: skopeo's wall
# over it is about the best ratio a client can reach against skopeo on this bundle (curl's own
# pace is in the figure too, so it is not an exact bound).
read -r floor_size floor_tar floor_entry < <(for t in "$work"/bundle/*.tar; do
  tar -tvf "$t" | awk -v t="$t" '$6 ~ /blobs\/sha256\/[0-9a-f]+$/ { print $3, t, $6 }'; done | sort -n | tail -1)
tar -xOf "$floor_tar" "$floor_entry" >"$work/floor-blob"
cat >"$work/floor-upload.sh" <<FLOOR
#!/usr/bin/env bash
set -euo pipefail
host=\$1 ca=\$2
location() { awk 'tolower(\$1) == "location:" { print \$2 }' | tr -d '\\r'; }
at=\$(curl -fsS -u "rw:$password" --cacert "\$ca" -X POST -D - -o /dev/null "https://\$host/v2/floor/blobs/uploads/" | location)
at=\$(curl -fsS -u "rw:$password" --cacert "\$ca" -X PATCH -H 'Content-Type: application/octet-stream' -H 'Expect:' \\
  -T "$work/floor-blob" -D - -o /dev/null "\$at" | location)
case "\$at" in *\\?*) sep='&';; *) sep='?';; esac
curl -fsS -u "rw:$password" --cacert "\$ca" -X PUT -o /dev/null "\$at\${sep}digest=sha256:${floor_entry##*/}"
FLOOR
chmod +x "$work/floor-upload.sh"
floor_wall=""
for n in 1 2; do
  scripts/registry.sh start "$work/floor-$n" --tls --user "rw:$password" >"$work/floor-$n.env"; read_env FL "$work/floor-$n.env"
  timed floor "$work/floor-upload.sh" "$FL_HOST" "$FL_CA"
  best floor_wall "$T_WALL"
  scripts/registry.sh stop "$work/floor-$n" >/dev/null 2>&1 || true; rm -rf "$work/floor-$n"
done
rm -f "$work/floor-blob"
row "floor: $((floor_size / 1048576)) MiB blob by curl, s" "$floor_wall" "-" "-"
row "push: wall / that floor" "$(ratio "$push_wall" "$floor_wall")" "$(ratio "$skopeo_push_wall" "$floor_wall")" "-"

# 4c. The same pull and push comparison on an edition where no layer dominates (base layer
# BENCH_FLAT_BASE_LAYER, 160M), so the floor above does not hide the rest of the push.
if [ "${BENCH_FLAT:-1}" != 0 ]; then bench_flat; fi

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

# 7. A WAN between the connected host and the source: 40 ms more per round trip, 8 MB/s per
# connection, 40 MB/s for the link, through the test suite's FaultProxy (dkp-dev wan-proxy).
wan_rows=()
if [ "${BENCH_WAN:-1}" != 0 ]; then
  "$bin/dkp-dev" seed-edition "$SRC_HOST/deckhouse/wan" --insecure --base-layer "${BENCH_WAN_BASE_LAYER:-128M}" \
    --image-layer 4M >/dev/null
  # wan_proxy NAME UPSTREAM [FLAG]: a WAN proxy in front of UPSTREAM; sets WAN_HOST.
  wan_proxy() {
    "$bin/dkp-dev" wan-proxy --upstream "$2" --latency-ms 40 --connection-rate 8000000 --link-rate 40000000 \
      --stats "$work/$1.stats" "${@:3}" >"$work/$1.env" 2>"$work/$1.err" &
    wan_pids+=($!)
    for _ in $(seq 1 100); do grep -q '^PORT=' "$work/$1.env" 2>/dev/null && break; sleep 0.1; done
    WAN_HOST=127.0.0.1:$(sed -n 's/^PORT=//p' "$work/$1.env")
  }
  wan_proxy wan "$SRC_HOST"; wan_host=$WAN_HOST
  wan_bytes() { sleep 0.3; awk '/^bytesToClient/ { print $2 }' "$work/wan.stats"; }
  wan_args=(--source "$wan_host/deckhouse/wan" --insecure --deckhouse-tag v1.69.3 -j "$JOBS" --progress none)
  "$bin/dkp-mirror" pull "$work/wan-plan" "${wan_args[@]}" --dry-run --json >"$work/wan-plan.json"
  jq -r '.references[] | [.repository, .reference, .layout, .shortTag] | join("|")' "$work/wan-plan.json" | sort -u >"$work/wan-refs.tsv"
  sed -e "s|$work/refs.tsv|$work/wan-refs.tsv|; s|$work/skopeo-oci|$work/wan-skopeo-oci|g; s|docker://$SRC_HOST/|docker://$wan_host/|" \
    "$work/skopeo-all.sh" >"$work/wan-skopeo.sh"
  chmod +x "$work/wan-skopeo.sh"
  rm -rf "$work/wan-bundle"
  # Latency before the first blob byte: the same pull straight from the registry (loopback),
  # then through the WAN; the difference over the 40 ms RTT is how many round trips the pull
  # makes in sequence before its first blob byte (connections, TLS, tokens, discovery).
  rm -rf "$work/wan-loop"
  timed wan-loop "$bin/dkp-mirror" pull "$work/wan-loop" --source "$SRC_HOST/deckhouse/wan" --insecure --deckhouse-tag v1.69.3 \
    -j "$JOBS" --progress none --json
  loop_first=$(jq -r '.secondsToFirstBlobByte // 0' "$work/wan-loop.out")
  rm -rf "$work/wan-loop"
  timed wan-pull "$bin/dkp-mirror" pull "$work/wan-bundle" "${wan_args[@]}" --json
  wan_wall=$T_WALL
  wan_first=$(jq -r '.secondsToFirstBlobByte // 0' "$work/wan-pull.out")
  wan_trips=$(awk -v w="$wan_first" -v l="$loop_first" 'BEGIN { printf "%.0f", (w - l) / 0.040 }')
  wan_first=$(awk -v s="$wan_first" 'BEGIN { printf "%.2f", s }'); loop_first=$(awk -v s="$loop_first" 'BEGIN { printf "%.2f", s }')
  timed wan-skopeo "$work/wan-skopeo.sh"
  wan_skopeo_wall=$T_WALL
  wan_bundle=$(du -cb "$work"/wan-bundle/*.tar | tail -1 | cut -f1)
  wan_mbs=$(awk -v b="$wan_bundle" -v t="$wan_wall" 'BEGIN { printf "%.1f", b / t / 1e6 }')
  wan_link=$(awk -v b="$wan_bundle" -v t="$wan_wall" 'BEGIN { printf "%.0f%%", b / t / 40e6 * 100 }')
  # Killed halfway (-9), then run again: what both runs moved on the wire, against the bundle.
  rm -rf "$work/wan-bundle"
  start_bytes=$(wan_bytes)
  "$bin/dkp-mirror" pull "$work/wan-bundle" "${wan_args[@]}" >/dev/null 2>&1 &
  killed=$!
  while kill -0 "$killed" 2>/dev/null; do
    now=$(awk '/^bytesToClient/ { print $2 }' "$work/wan.stats")
    [ $((now - start_bytes)) -lt $((wan_bundle / 2)) ] || { kill -9 "$killed"; break; }
    sleep 0.05
  done
  wait "$killed" 2>/dev/null || true
  timed wan-rerun "$bin/dkp-mirror" pull "$work/wan-bundle" "${wan_args[@]}" --json
  wan_total=$(( $(wan_bytes) - start_bytes ))
  wan_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "pinned pull $((wan_bundle / 1048576)) MiB: wall s" "$wan_wall" "$wan_skopeo_wall" "$(ratio "$wan_skopeo_wall" "$wan_wall")x")")
  wan_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "pull: MB/s, share of the 40 MB/s link" "$wan_mbs" "$wan_link" "-")")
  wan_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "first blob byte after: s (loopback)" "$wan_first ($loop_first)" "-" "-")")
  wan_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "  = round trips in sequence" "$wan_trips" "-" "-")")
  wan_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "killed -9 halfway + re-run: wire/bundle" "$(ratio "$wan_total" "$wan_bundle")" "-" "-")")
  # Push of the pinned bundle over the WAN (uploads paced too) into a fresh TLS registry each:
  # ours from the bundle, skopeo from its OCI layouts of the WAN pull, one reference at a time.
  sed -e "s|$work/refs.tsv|$work/wan-refs.tsv|; s|$work/skopeo-oci|$work/wan-skopeo-oci|g" "$work/skopeo-push.sh" >"$work/wan-skopeo-push.sh"
  chmod +x "$work/wan-skopeo-push.sh"
  for r in wan-push-ours wan-push-theirs; do scripts/registry.sh start "$work/$r" --tls --user "rw:$password" >"$work/$r.env"; done
  read_env WPO "$work/wan-push-ours.env"; read_env WPT "$work/wan-push-theirs.env"
  wan_proxy wan-push-ours "$WPO_HOST" --pace-uploads
  timed wan-push "$bin/dkp-mirror" push "$work/wan-bundle" "$WAN_HOST/system/deckhouse" --ca-file "$WPO_CA" -j "$JOBS" --progress none --json
  wan_push_wall=$T_WALL; wan_push_rss=$T_RSS
  mkdir -p "$work/wan-push-certs"; cp "$WPT_CA" "$work/wan-push-certs/ca.crt"
  wan_proxy wan-push-theirs "$WPT_HOST" --pace-uploads
  timed wan-skopeo-push "$work/wan-skopeo-push.sh" "$WAN_HOST" "$work/wan-push-certs"
  wan_skopeo_push_wall=$T_WALL
  wan_push_mbs=$(awk -v b="$wan_bundle" -v t="$wan_push_wall" 'BEGIN { printf "%.1f", b / t / 1e6 }')
  wan_push_link=$(awk -v b="$wan_bundle" -v t="$wan_push_wall" 'BEGIN { printf "%.0f%%", b / t / 40e6 * 100 }')
  wan_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "push $((wan_bundle / 1048576)) MiB: wall s" "$wan_push_wall" "$wan_skopeo_push_wall" "$(ratio "$wan_skopeo_push_wall" "$wan_push_wall")x")")
  wan_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "push: MB/s, share of the 40 MB/s link" "$wan_push_mbs" "$wan_push_link" "-")")
  wan_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "push: peak RSS MB" "$wan_push_rss" "-" "-")")
  for pid in "${wan_pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wan_pids=()
fi

# 8. Push through an Ingress: nginx (TLS, HTTP/2) in front of a fresh TLS registry each time.
ingress_rows=()
if [ "${BENCH_INGRESS:-1}" != 0 ]; then
  # ingress NAME BUFFERING: a registry and its nginx; sets ING_HOST and ING_CA (nginx's).
  ingress() {
    scripts/registry.sh start "$work/$1" --tls --user "rw:$password" >"$work/$1.env"
    read_env IR "$work/$1.env"
    scripts/ingress.sh start "$work/$1-nginx" --upstream "https://$IR_HOST" --request-buffering "$2" >"$work/$1-nginx.env"
    read_env ING "$work/$1-nginx.env"
  }
  for buffering in on off; do
    ingress "ingress-$buffering" "$buffering"
    timed "ingress-push-$buffering" "$bin/dkp-mirror" push "$work/bundle" "$ING_HOST/system/deckhouse" --ca-file "$ING_CA" \
      -j "$JOBS" --progress none --json
    printf -v "ingress_wall_$buffering" '%s' "$T_WALL"; printf -v "ingress_rss_$buffering" '%s' "$T_RSS"
  done
  ingress ingress-skopeo on
  mkdir -p "$work/ingress-certs"; cp "$ING_CA" "$work/ingress-certs/ca.crt"
  timed ingress-skopeo-push "$work/skopeo-push.sh" "$ING_HOST" "$work/ingress-certs"
  ingress_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "push via nginx, buffering on: s" "$ingress_wall_on" "$T_WALL" "$(ratio "$T_WALL" "$ingress_wall_on")x")")
  ingress_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "  peak RSS MB" "$ingress_rss_on" "$T_RSS" "-")")
  ingress_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "push via nginx, buffering off: s" "$ingress_wall_off" "-" "-")")
  ingress_rows+=("$(printf '| %-34s | %12s | %12s | %8s |' "  peak RSS MB" "$ingress_rss_off" "-" "-")")
fi

# 9. Memory at scale: the plan of a pull with N more digest images.
if [ "${BENCH_SCALE:-0}" != 0 ]; then
  scripts/registry.sh start "$work/scale" >"$work/scale.env"; read_env SCALE "$work/scale.env"
  "$bin/dkp-dev" seed-edition "$SCALE_HOST/deckhouse/ee" --cheap-platform-images "$BENCH_SCALE" --insecure >/dev/null
  timed scale-pull "$bin/dkp-mirror" pull "$work/scale-bundle" --source "$SCALE_HOST/deckhouse/ee" --insecure \
    --deckhouse-tag v1.69.3 --no-modules --no-packages --no-security-db -j "$JOBS" --progress none
  references=$(grep -o 'pulled [0-9]* references' "$work/scale-pull.err" "$work/scale-pull.out" | grep -o '[0-9]*' | head -1)
  row "pull, ${references:-?} references: wall s" "$T_WALL" "-" "-"
  row "pull, ${references:-?} references: RSS MB" "$T_RSS" "-" "-"
  rm -rf "$work/scale-bundle"
fi

# 10. Bytes shipped for an update (defined above).
if [ "${BENCH_DIFF:-1}" != 0 ]; then bench_diff; fi

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
if [ ${#wan_rows[@]} -gt 0 ]; then
  echo
  echo "WAN (40 ms added per round trip, 8 MB/s per connection, 40 MB/s link; skopeo one reference at a time; one run each):"
  printf '| %-34s | %12s | %12s | %8s |\n' "measure" "dkp-mirror" "skopeo" "ratio"
  printf '|%s|%s|%s|%s|\n' "------------------------------------" "--------------" "--------------" "----------"
  printf '%s\n' "${wan_rows[@]}"
fi
if [ ${#ingress_rows[@]} -gt 0 ]; then
  echo
  echo "Through an Ingress (nginx with TLS and HTTP/2 in front of the TLS registry; one run each, -j $JOBS):"
  printf '| %-34s | %12s | %12s | %8s |\n' "measure" "dkp-mirror" "skopeo" "ratio"
  printf '|%s|%s|%s|%s|\n' "------------------------------------" "--------------" "--------------" "----------"
  printf '%s\n' "${ingress_rows[@]}"
fi
print_diff
if [ ${#sweep[@]} -gt 0 ]; then
  echo
  echo "dkp-mirror at each -j ($((bundle_bytes / 1048576)) MiB bundle; push into a fresh registry each time):"
  printf '| %4s | %8s | %8s | %8s | %8s | %8s | %8s |\n' "-j" "pull s" "MB/s" "RSS MB" "push s" "MB/s" "RSS MB"
  printf '|------|----------|----------|----------|----------|----------|----------|\n'
  printf '%s\n' "${sweep[@]}"
fi
