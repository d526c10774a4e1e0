# Shared by scripts/*.sh: puts Swift on PATH and installs missing Debian packages.
# shellcheck shell=bash

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH=/opt/swift/usr/bin:$PATH
fi

# Packages the build and the tests need: the C libraries, the real registry, htpasswd
# (bcrypt users), openssl (test CAs), curl (probes in scripts/registry.sh).
BASE_PACKAGES=(pkg-config libarchive-dev libzstd-dev libssl-dev docker-registry apache2-utils openssl curl iproute2)

# What scripts/package.sh needs on top: dpkg-shlibdeps (dpkg-dev, which brings binutils' strip).
PACKAGE_PACKAGES=(dpkg-dev binutils)
# What the packaging test needs on top: man to render the packaged man page.
PACKAGE_TEST_PACKAGES=(man-db)

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
