import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the tests' temporary files go: one folder per test process,
/// `$TMPDIR/dkp-tests-<pid>`, removed when the process exits. A full run writes gigabytes of
/// bundles; left in place, a few runs fill the disk. A run that was killed leaves its folder:
/// the next run removes the folders whose process is gone (on a thread of its own: a killed
/// run leaves gigabytes). `DKP_KEEP_TEST_FILES=1` keeps this folder and the others, to look at
/// a failure's bundles (registries and a few tests still remove their own folders).
public enum TestScratch {
    static let prefix = "dkp-tests-"

    /// This process's folder, made (and the cleanup set up) on first use.
    public static let root: URL = {
        let base = URL(fileURLWithPath: NSTemporaryDirectory())
        let keep = ProcessInfo.processInfo.environment["DKP_KEEP_TEST_FILES"] == "1"
        if !keep { Thread.detachNewThread { removeFoldersOfEndedRuns(in: base) } }
        let root = base.appendingPathComponent("\(prefix)\(getpid())")
        try? FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        if !keep { atexit { TestScratch.removeOwnFolder() } }
        return root
    }()

    private static func removeOwnFolder() {
        try? FileManager.default.removeItem(at: root)
    }

    /// Folders `dkp-tests-<pid>` whose process no longer runs.
    private static func removeFoldersOfEndedRuns(in base: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: base.path)) ?? []
        for name in names where name.hasPrefix(prefix) {
            guard let pid = pid_t(name.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(at: base.appendingPathComponent(name))
            }
        }
    }
}
