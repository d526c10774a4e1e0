#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import OCI
import Streams
import Synchronization

/// SHA-256 of bundle files and the `SHA256SUMS` file beside them, in the format of coreutils
/// `sha256sum`, so the receiving side can check a copied bundle with standard tools
/// (`cd DIR && sha256sum -c SHA256SUMS`) before pushing it.
public enum Checksums {
    /// Read size for hashing: large enough to keep a disk busy with few system calls, small
    /// enough that one piece per core (files are hashed in parallel) stays small: at 4 MiB the
    /// three tars of a pull held 12 MB at its end, more than its whole plan of 20,000
    /// references; at 1 MiB still 3 MB.
    public static let readSize = 256 << 10

    /// The SHA-256 of a whole file, read in 256 KiB pieces (memory stays at one piece).
    public static func sha256(ofFile path: String) throws(BundleError) -> Digest {
        let reader: ChunkedFileReader
        do {
            reader = try ChunkedFileReader(path: path, chunkSize: readSize)
        } catch {
            throw Self.map(error, path: path)
        }
        let hasher = SHA256()
        while true {
            let piece: UnsafeRawBufferPointer?
            do { piece = try reader.next() } catch { throw Self.map(error, path: path) }
            guard let piece else { break }
            hasher.update(piece)
        }
        return hasher.finalize()
    }

    /// The SHA-256 of several files, hashed in parallel on all cores (bundle files are tens of
    /// GB; one core hashes ~1-2 GB/s, a disk array reads faster). Results in input order.
    public static func sha256(ofFiles paths: [String]) throws(BundleError) -> [Digest] {
        let results = Mutex([Result<Digest, BundleError>?](repeating: nil, count: paths.count))
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            let result: Result<Digest, BundleError>
            do throws(BundleError) { result = .success(try sha256(ofFile: paths[i])) } catch { result = .failure(error) }
            results.withLock { $0[i] = result }
        }
        var digests = [Digest]()
        digests.reserveCapacity(paths.count)
        for result in results.withLock({ $0 }) {
            guard let result else { throw .corrupt(file: "SHA256SUMS", detail: "a file was not hashed") }
            digests.append(try result.get())
        }
        return digests
    }

    /// Writes `directory/SHA256SUMS` for `files` (names relative to `directory`, or paths
    /// inside it): `<hex>  <name>` lines sorted by name, written atomically (`.partial`,
    /// fsync, rename) so a half-written checksum file never exists.
    public static func writeSHA256SUMS(directory: String, files: [String]) throws(BundleError) {
        let names = try files.map { (file: String) throws(BundleError) -> String in try relativeName(file, in: directory) }
        let sorted = Array(Set(names)).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let digests = try sha256(ofFiles: sorted.map { TarIO.joinPath(directory, $0) })
        var text = ""
        for (name, digest) in zip(sorted, digests) {
            text += line(digest: digest, name: name)
        }
        let target = TarIO.joinPath(directory, "SHA256SUMS")
        try TarIO.writeFileAtomically(target, Array(text.utf8), temporarySuffix: ".partial")
    }

    /// One line as `sha256sum` prints it; names with a backslash or newline are escaped and
    /// the line starts with a backslash, as coreutils does.
    public static func line(digest: Digest, name: String) -> String {
        guard name.contains("\\") || name.contains("\n") else { return "\(digest.hex)  \(name)\n" }
        let escaped = name.replacingAll("\\", with: "\\\\").replacingAll("\n", with: "\\n")
        return "\\\(digest.hex)  \(escaped)\n"
    }

    private static func relativeName(_ file: String, in directory: String) throws(BundleError) -> String {
        var name = file
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        if name.hasPrefix(prefix) { name = String(name.dropFirst(prefix.count)) }
        if name.hasPrefix("/") || name.isEmpty || name.split(separator: "/").contains("..") {
            throw .invalidEntryName(name: file, reason: "SHA256SUMS can only list files inside \(directory)")
        }
        return name
    }

    private static func map(_ error: StreamsError, path: String) -> BundleError {
        switch error {
        case let .io(path, operation, code): return .io(path: path, operation: operation, errno: code)
        default: return .corrupt(file: path, detail: error.description)
        }
    }
}

extension String {
    /// Replaces every occurrence of `target` (no Foundation needed).
    fileprivate func replacingAll(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

extension Checksums {
    /// Streebog-256 (GOST R 34.11-2012) of a file as lowercase hex, as d8's `.gostsum` files hold it.
    public static func streebog256Hex(ofFile path: String) throws(BundleError) -> String {
        let reader: ChunkedFileReader
        do { reader = try ChunkedFileReader(path: path, chunkSize: Checksums.readSize) } catch {
            throw .io(path: path, operation: "open", errno: ENOENT)
        }
        let hasher = Streebog256()
        do {
            while let chunk = try reader.next() { hasher.update(chunk) }
        } catch {
            throw .io(path: path, operation: "read", errno: EIO)
        }
        return hasher.finalizeHex()
    }

    /// Writes `<file>.gostsum` (hex, no newline) beside each file, atomically, hashing in parallel.
    public static func writeGostsums(_ paths: [String]) throws(BundleError) {
        let failures = Mutex<[BundleError]>([])
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            do throws(BundleError) {
                let hex = try streebog256Hex(ofFile: paths[i])
                let target = paths[i] + ".gostsum"
                guard FileManager.default.createFile(atPath: target + ".tmp", contents: Data(hex.utf8)),
                      rename(target + ".tmp", target) == 0 else {
                    throw BundleError.io(path: target, operation: "write", errno: errno)
                }
            } catch {
                failures.withLock { $0.append(error) }
            }
        }
        if let first = failures.withLock({ $0.first }) { throw first }
    }
}
