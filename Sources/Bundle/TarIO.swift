#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Small file-system helpers shared by the tar writers (a namespace, so they cannot clash
/// with helpers of other files in the module).
public enum TarIO {
    /// `(directory, last component)` of a path; the directory is "." for a bare name.
    static func splitPath(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    static func joinPath(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// Makes a rename or create in the directory of `path` durable.
    static func syncDirectory(of path: String) throws(BundleError) {
        let directory = splitPath(path).directory
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: directory, operation: "open the directory", errno: errno) }
        defer { close(fd) }
        // Some file systems refuse fsync on directories; that is not a failure of ours.
        if fsync(fd) != 0 && errno != EINVAL && errno != EROFS {
            throw .io(path: directory, operation: "fsync the directory", errno: errno)
        }
    }

    /// `withUnsafeBytes` that keeps the typed error (the standard one only rethrows `any Error`).
    static func withBytes<R>(
        _ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(BundleError) -> R
    ) throws(BundleError) -> R {
        let result: Result<R, BundleError> = bytes.withUnsafeBytes { raw in
            do throws(BundleError) { return .success(try body(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// The size of the file at `path`, or nil when it cannot be examined.
    static func fileSize(_ path: String) -> Int64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Int64(info.st_size)
    }

    /// The whole content of a small file, or nil when it cannot be read.
    static func readSmallFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { return result }
            result += buffer[0..<n]
        }
    }
}
