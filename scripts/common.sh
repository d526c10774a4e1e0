# Shared by scripts/*.sh: puts Swift on PATH and installs missing Debian packages.
# shellcheck shell=bash

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH=/opt/swift/usr/bin:$PATH
fi

# Packages the build and the tests need: the C libraries (librhash for Streebog), the zstd CLI
# (the zstd decoder tests compare against it), the real registry, htpasswd
# (bcrypt users), openssl (test CAs), curl (probes in scripts/registry.sh), tinyproxy (the real
# HTTP proxy of scripts/proxy.sh).
BASE_PACKAGES=(pkg-config libarchive-dev libzstd-dev zstd librhash-dev libssl-dev docker-registry apache2-utils openssl curl iproute2 tinyproxy nginx-light)

# What scripts/package.sh needs on top: dpkg-shlibdeps (dpkg-dev, which brings binutils' strip).
PACKAGE_PACKAGES=(dpkg-dev binutils)
# What the packaging test needs on top: man to render the packaged man page, zsh and fish to
# load the packaged completions.
PACKAGE_TEST_PACKAGES=(man-db zsh fish)

# tree_files: the tree's files, NUL-separated, sorted: what git tracks or would track (untracked
# files that are not ignored), without files deleted but still in the index; every file below
# the current folder when it is not a git checkout.
tree_files() {
  local file
  { git ls-files -z --cached --others --exclude-standard 2>/dev/null \
      || find . -path ./.git -prune -o -path './.build*' -prune -o -path ./dist -prune -o -type f -printf '%P\0'; } \
    | sort -zu | while IFS= read -r -d '' file; do [ -f "$file" ] && printf '%s\0' "$file"; done
}

# package_fingerprint: the SHA-256 (names and contents) of what the packages are made from:
# Package.swift, Package.resolved (ignored by git, but it fixes the dependencies' versions),
# Sources/ and the packaging scripts. scripts/package.sh records it in dist/SOURCE and the
# packaging test compares, so a package built from other uncommitted changes counts as stale
# (and a change to the tests alone does not).
package_fingerprint() {
  { tree_files; [ ! -f Package.resolved ] || printf 'Package.resolved\0'; } \
    | grep -zE '^(Package\.swift|Package\.resolved|Sources/.*|scripts/package\.sh|scripts/common\.sh)$' \
    | sort -zu | xargs -0 -r sha256sum -- | sha256sum | cut -c1-64
}

# ensure_packages PKG...: apt-get update then install whatever is not installed yet.
ensure_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
