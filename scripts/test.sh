#!/usr/bin/env bash
# Installs what the build and tests need (apt-get), builds, and runs every test against
# real registries that the tests start on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

ensure_packages "${BASE_PACKAGES[@]}" "${PACKAGE_PACKAGES[@]}" "${PACKAGE_TEST_PACKAGES[@]}"
swift --version 2>&1 | head -1

# The packages first: Tests/EndToEndTests/PackageTests.swift installs and runs them (and fails,
# saying so, when they are missing or stale). A failure here fails the run, after the other
# tests have run. They are made from a debug build (with the Swift runtime linked in, as a
# release's) unless PACKAGE_CONFIGURATION=release: from a clean clone, as CI runs this, the
# release build alone would take 30 to 60 minutes here, the debug one about half (README,
# Packaging); the rest of the packaging is the same.
# So this leaves debug packages in dist/: a release comes from scripts/package.sh alone.
# Resolve the dependencies first: a clean clone has no Package.resolved yet, and the packages'
# source fingerprint (dist/SOURCE) covers it, so it must exist before they are made, or the
# packaging test would find them stale once the test build writes it.
swift package resolve >/dev/null
package_status=0
PACKAGE_CONFIGURATION=${PACKAGE_CONFIGURATION:-debug} scripts/package.sh || package_status=$?

log=$(mktemp)
if ! swift build --build-tests >"$log" 2>&1; then
  grep -E 'error|warning: unre' "$log" | head -50 >&2 || true
  tail -20 "$log" >&2
  echo "build failed" >&2
  exit 1
fi
echo "build complete"

# Swift Testing runs the suites in parallel; each test starts its own registries on free ports.
set +e
swift test --skip-build >"$log" 2>&1
status=$?
set -e
grep -vE '^(◇|↳)|started\.$' "$log"
# Per-test verdict lines; the run's own summary line ("Test run with N tests") is not a test.
passed=$(grep -E '^✔ Test .* passed' "$log" | grep -vc '^✔ Test run with' || true)
failed=$(grep -E '^✘ Test .* failed' "$log" | grep -vc '^✘ Test run with' || true)
rm -f "$log"
echo
echo "$passed passed, $failed failed"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "swift test exited $status" >&2
fi
if [ "$package_status" -ne 0 ]; then
  echo "scripts/package.sh exited $package_status" >&2
  [ "$status" -ne 0 ] || status=$package_status
fi
exit "$status"
