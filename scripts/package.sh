#!/usr/bin/env bash
# Builds what goes to a bastion without Swift:
#   dist/dkp-mirror_<version>_<arch>.deb
#   dist/dkp-mirror_<version>_linux_<arch>.tar.gz   (the same files under dkp-mirror_<version>_linux_<arch>/usr/...)
#   dist/SHA256SUMS
#   dist/SOURCE      (version, commit, configuration, package_fingerprint: what the packaging test checks)
# The binary is a release build with the Swift runtime and Foundation linked statically
# (--static-swift-stdlib); what it still links dynamically comes from Debian (libarchive,
# libzstd, libssl, libstdc++, glibc, ...), and the .deb's Depends are computed from it by
# dpkg-shlibdeps. Completions (bash, zsh, fish) come from the binary itself
# (--generate-completion-script), the man page from swift-argument-parser's generate-manual
# tool, which reads the binary's --experimental-dump-help.
#
# The build runs on a copy of the working tree (<scratch>/stage, refreshed file by file
# so unchanged files keep their times and the build stays incremental) in which
# Sources/dkp-mirror/BuildInfo.swift gets the real commit; the working tree itself is never
# changed. Uncommitted changes are built too, and the commit then reads "<hash>-dirty".
#
# PACKAGE_CONFIGURATION=debug builds the same packages from a debug build (still with
# --static-swift-stdlib, in .build-package-debug): about half the time from a clean folder, so
# scripts/test.sh uses it to test the packaging; the .deb's description and dist/SOURCE say
# "debug". Releases are built with the default, release.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

ensure_packages "${BASE_PACKAGES[@]}" "${PACKAGE_PACKAGES[@]}"

root=$PWD
configuration=${PACKAGE_CONFIGURATION:-release}
case $configuration in
  release) scratch=$root/.build-release ;;
  debug) scratch=$root/.build-package-debug ;;
  *) echo "package.sh: PACKAGE_CONFIGURATION must be release or debug, not '$configuration'" >&2; exit 2 ;;
esac
stage=$scratch/stage
dist=$root/dist
work=$scratch/package
info=Sources/dkp-mirror/BuildInfo.swift

die() { echo "package.sh: $*" >&2; exit 1; }

version=$(sed -n 's/^ *static let version = "\([^"]*\)"$/\1/p' "$info")
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "no version of the form X.Y.Z in $info (found '$version')"
grep -q '^ *static let commit = "unknown"$' "$info" || die "$info must hold: static let commit = \"unknown\""

commit=unknown
commit_epoch=$(date +%s)
if git rev-parse --git-dir >/dev/null 2>&1; then
  commit=$(git rev-parse --short=7 HEAD)
  commit_epoch=$(git log -1 --format=%ct HEAD)
  if [ -n "$(git status --porcelain)" ]; then
    commit+="-dirty"
    echo "package.sh: the working tree has uncommitted changes; they are built, the commit reads $commit" >&2
  fi
fi
arch=$(dpkg --print-architecture)
echo "dkp-mirror $version (commit $commit), $arch, $configuration build"

# --- the build copy -------------------------------------------------------------------------
mkdir -p "$stage"
# sync SRC DST: copy only when the content differs, so the build stays incremental.
sync_file() {
  if ! cmp -s "$1" "$2"; then
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2"
  fi
}
declare -A wanted=()
while IFS= read -r -d '' file; do
  wanted[$file]=1
  sync_file "$file" "$stage/$file"
done < <(tree_files)
fingerprint=$(package_fingerprint)
# The same dependency versions as the development build, when it has resolved them.
if [ -f Package.resolved ]; then wanted[Package.resolved]=1; sync_file Package.resolved "$stage/Package.resolved"; fi
# Files gone from the tree go from the copy too (SwiftPM's own files excepted).
while IFS= read -r -d '' file; do
  case $file in Package.resolved|.swiftpm/*) continue ;; esac
  [ -n "${wanted[$file]:-}" ] || rm -f "$stage/$file"
done < <(cd "$stage" && find . -type f -printf '%P\0')

stamped=$(mktemp)
trap 'rm -f "$stamped"' EXIT
sed "s/^\( *static let commit = \)\"unknown\"$/\1\"$commit\"/" "$info" >"$stamped"
grep -q "static let commit = \"$commit\"" "$stamped" || die "could not stamp the commit into $info"
sync_file "$stamped" "$stage/$info"

# --- the build ------------------------------------------------------------------------------
build=(swift build -c "$configuration" --static-swift-stdlib --package-path "$stage" --scratch-path "$scratch" --product dkp-mirror)
log=$scratch/package-build.log
started=$(date +%s)
if ! "${build[@]}" >"$log" 2>&1; then
  grep -E 'error' "$log" | head -50 >&2 || true
  tail -20 "$log" >&2
  die "$configuration build failed (log: $log)"
fi
build_seconds=$(( $(date +%s) - started ))
bin=$("${build[@]}" --show-bin-path)/dkp-mirror
echo "$configuration build: ${build_seconds} s"

# Nothing of the toolchain may be linked: no libswift*, no Foundation, no dispatch, nothing
# from the toolchain's folder, and nothing missing.
toolchain=$(cd "$(dirname "$(readlink -f "$(command -v swift)")")/../.." && pwd)
libs=$(ldd "$bin")
if grep -E 'libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime|not found' <<<"$libs" \
   || { [ "$toolchain" != / ] && [ "$toolchain" != /usr ] && grep -F "$toolchain/" <<<"$libs"; }; then
  die "the $configuration binary still needs the Swift toolchain's libraries (see above)"
fi

# --- the files ------------------------------------------------------------------------------
rm -rf "$work"
tree=$work/tree
mkdir -p "$tree/usr/bin" "$tree/usr/share/bash-completion/completions" "$tree/usr/share/zsh/vendor-completions" \
  "$tree/usr/share/fish/vendor_completions.d" "$tree/usr/share/man/man1" "$tree/usr/share/doc/dkp-mirror"
# Debian ships stripped binaries; the symbols stay in the build folder.
strip --strip-unneeded -o "$tree/usr/bin/dkp-mirror" "$bin"
chmod 0755 "$tree/usr/bin/dkp-mirror"
packaged=$tree/usr/bin/dkp-mirror

got=$("$packaged" --version)
[ "$got" = "dkp-mirror $version (commit $commit)" ] || die "--version says '$got'"

"$packaged" --generate-completion-script bash >"$tree/usr/share/bash-completion/completions/dkp-mirror"
"$packaged" --generate-completion-script zsh >"$tree/usr/share/zsh/vendor-completions/_dkp-mirror"
"$packaged" --generate-completion-script fish >"$tree/usr/share/fish/vendor_completions.d/dkp-mirror.fish"

# The man page: swift-argument-parser's own generator (the tool behind its generate-manual
# plugin), built from the checkout SwiftPM already resolved.
argparser=$scratch/checkouts/swift-argument-parser
[ -f "$argparser/Tools/generate-manual/GenerateManual.swift" ] || die "no swift-argument-parser checkout with Tools/generate-manual in $scratch/checkouts"
tools=(swift build --package-path "$argparser" --scratch-path "$scratch/tools" --product generate-manual)
"${tools[@]}" >"$scratch/tools.log" 2>&1 || { tail -20 "$scratch/tools.log" >&2; die "building generate-manual failed"; }
manual=$work/man
mkdir -p "$manual"
"$("${tools[@]}" --show-bin-path)/generate-manual" "$packaged" --date "$(date -u -d "@$commit_epoch" +%Y-%m-%d)" \
  --section 1 --output-directory "$manual"
[ -s "$manual/dkp-mirror.1" ] || die "generate-manual wrote no dkp-mirror.1"
gzip -9n <"$manual/dkp-mirror.1" >"$tree/usr/share/man/man1/dkp-mirror.1.gz"

gzip -9n <<EOF >"$tree/usr/share/doc/dkp-mirror/changelog.gz"
dkp-mirror $version, built from commit $commit.
EOF
find "$tree" -type d -exec chmod 0755 {} +
find "$tree" -type f ! -path '*/usr/bin/*' -exec chmod 0644 {} +

# --- .deb -----------------------------------------------------------------------------------
# dpkg-shlibdeps wants a debian/control beside it naming the binary package.
mkdir -p "$work/debian"
cat >"$work/debian/control" <<EOF
Source: dkp-mirror

Package: dkp-mirror
Architecture: $arch
EOF
depends=$(cd "$work" && dpkg-shlibdeps -O -e"tree/usr/bin/dkp-mirror" 2>"$work/shlibdeps.err" | sed -n 's/^shlibs:Depends=//p') \
  || { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps failed"; }
[ -n "$depends" ] || { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps found no dependencies"; }
installed_size=$(du -sk --apparent-size "$tree/usr" | cut -f1)

debug_note=""
[ "$configuration" = release ] || debug_note=$'\n .\n A debug build (PACKAGE_CONFIGURATION=debug), made to test the packaging; not for release.'
mkdir -p "$tree/DEBIAN"
cat >"$tree/DEBIAN/control" <<EOF
Package: dkp-mirror
Version: $version
Architecture: $arch
Maintainer: dkp-mirror developers <dkp-mirror@localhost>
Installed-Size: $installed_size
Depends: $depends
Section: admin
Priority: optional
Description: mirror Deckhouse Kubernetes Platform images for air-gapped clusters
 Pulls a DKP edition into d8-compatible tar bundles on a connected host, verifies
 them after they cross the air gap, pushes them into the cluster's local registry
 and checks that the registry holds every image the cluster requires.
 .
 Built from commit $commit; the Swift runtime is linked in, so the
 host needs no Swift toolchain.${debug_note}
EOF

name=dkp-mirror_${version}_${arch}
tarname=dkp-mirror_${version}_linux_${arch}
mkdir -p "$dist"
rm -f "$dist"/dkp-mirror_*.deb "$dist"/dkp-mirror_*.tar.gz "$dist/SHA256SUMS" "$dist/SOURCE"
export SOURCE_DATE_EPOCH=$commit_epoch
dpkg-deb --root-owner-group -Zxz --build "$tree" "$dist/$name.deb" >/dev/null
rm -rf "$tree/DEBIAN"

# The tarball: the same files, under one folder.
mv "$tree" "$work/$tarname"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$commit_epoch" -C "$work" -cf - "$tarname" \
  | gzip -9n >"$dist/$tarname.tar.gz"
(cd "$dist" && sha256sum "$name.deb" "$tarname.tar.gz" >SHA256SUMS)
# What the packages were built from; the packaging test compares it with the tree.
printf 'version %s\ncommit %s\nconfiguration %s\nsources %s\n' "$version" "$commit" "$configuration" "$fingerprint" >"$dist/SOURCE"

size_of() { stat -c %s "$1"; }
cat <<EOF
$dist/$name.deb ($(size_of "$dist/$name.deb") bytes)
$dist/$tarname.tar.gz ($(size_of "$dist/$tarname.tar.gz") bytes)
binary: $(size_of "$bin") bytes unstripped, $(size_of "$work/$tarname/usr/bin/dkp-mirror") bytes stripped
Depends: $depends
EOF
