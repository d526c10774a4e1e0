#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one way this program writes a small file that must appear whole or not at all
/// (SHA256SUMS, `.gostsum`, tar-state records, inventories, deckhousereleases.yaml): a
/// temporary beside it, fsync, rename over the target, fsync of the directory, so neither a
/// crash nor a power cut leaves a half-written file under the real name.
public enum AtomicFile {
    public static func write(
        _ path: String, _ bytes: [UInt8], temporarySuffix: String = ".tmp"
    ) throws(BundleError) {
        let temporary = path + temporarySuffix
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BundleError.write(path: temporary, operation: "create", errno: errno) }
        if let code = writeAll(fd, bytes) {
            close(fd)
            throw BundleError.write(path: temporary, operation: "write", errno: code)
        }
        if fsync(fd) != 0 {
            let code = errno
            close(fd)
            throw BundleError.write(path: temporary, operation: "fsync", errno: code)
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw .io(path: temporary, operation: "rename to \(path)", errno: code)
        }
        try TarIO.syncDirectory(of: path)
    }
}

/// Writes all of `bytes` to `fd`; the errno of a failure, nil on success.
private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32? {
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        written += n
    }
    return nil
}
