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

    /// The hashes of one file from a single read: its SHA-256 and, when asked, its Streebog-256
    /// (GOST R 34.11-2012) as lowercase hex, as d8's `.gostsum` files hold it.
    public struct FileDigests: Sendable {
        public let sha256: Digest
        public let streebog256Hex: String?
    }

    /// The hashes of a whole file, read once in 256 KiB pieces (memory stays at one piece).
    public static func digests(ofFile path: String, streebog: Bool) throws(BundleError) -> FileDigests {
        let reader: ChunkedFileReader
        do {
            reader = try ChunkedFileReader(path: path, chunkSize: readSize)
        } catch {
            throw Self.map(error, path: path)
        }
        let sha256 = SHA256()
        let gost = streebog ? Streebog256() : nil
        while true {
            let piece: UnsafeRawBufferPointer?
            do { piece = try reader.next() } catch { throw Self.map(error, path: path) }
            guard let piece else { break }
            sha256.update(piece)
            gost?.update(piece)
        }
        return FileDigests(sha256: sha256.finalize(), streebog256Hex: gost?.finalizeHex())
    }

    /// The hashes of several files, hashed in parallel on all cores (bundle files are tens of
    /// GB; one core hashes ~1-2 GB/s, a disk array reads faster). Results in input order.
    public static func digests(ofFiles paths: [String], streebog: Bool) throws(BundleError) -> [FileDigests] {
        let results = Mutex([Result<FileDigests, BundleError>?](repeating: nil, count: paths.count))
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            let result: Result<FileDigests, BundleError>
            do throws(BundleError) { result = .success(try digests(ofFile: paths[i], streebog: streebog)) } catch { result = .failure(error) }
            results.withLock { $0[i] = result }
        }
        var all = [FileDigests]()
        all.reserveCapacity(paths.count)
        for result in results.withLock({ $0 }) {
            guard let result else { throw .corrupt(file: "SHA256SUMS", detail: "a file was not hashed") }
            all.append(try result.get())
        }
        return all
    }

    /// The SHA-256 of a whole file.
    public static func sha256(ofFile path: String) throws(BundleError) -> Digest {
        try digests(ofFile: path, streebog: false).sha256
    }

    /// The SHA-256 of several files, in parallel, in input order.
    public static func sha256(ofFiles paths: [String]) throws(BundleError) -> [Digest] {
        try digests(ofFiles: paths, streebog: false).map(\.sha256)
    }

    /// Writes `directory/SHA256SUMS` for `files` (names relative to `directory`, or paths
    /// inside it): `<hex>  <name>` lines sorted by name, written atomically (`.partial`,
    /// fsync, rename) so a half-written checksum file never exists. With `gostsums`, the same
    /// read of each file also gives its Streebog-256, written to `<file>.gostsum` (hex, no
    /// newline, as d8 writes it), atomically too.
    public static func writeSHA256SUMS(directory: String, files: [String], gostsums: Bool = false) throws(BundleError) {
        let names = try files.map { (file: String) throws(BundleError) -> String in try relativeName(file, in: directory) }
        let sorted = Array(Set(names)).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let paths = sorted.map { TarIO.joinPath(directory, $0) }
        let hashed = try digests(ofFiles: paths, streebog: gostsums)
        var text = ""
        for (name, digest) in zip(sorted, hashed) {
            text += line(digest: digest.sha256, name: name)
        }
        for (path, digest) in zip(paths, hashed) {
            if let hex = digest.streebog256Hex { try AtomicFile.write(path + ".gostsum", Array(hex.utf8)) }
        }
        let target = TarIO.joinPath(directory, "SHA256SUMS")
        try AtomicFile.write(target, Array(text.utf8), temporarySuffix: ".partial")
    }

    /// One line as `sha256sum` prints it; names with a backslash or newline are escaped and
    /// the line starts with a backslash, as coreutils does.
    public static func line(digest: Digest, name: String) -> String {
        guard name.contains("\\") || name.contains("\n") else { return "\(digest.hex)  \(name)\n" }
        let escaped = name.replacingAll("\\", with: "\\\\").replacingAll("\n", with: "\\n")
        return "\\\(digest.hex)  \(escaped)\n"
    }

    /// One line of a `SHA256SUMS` as read back: the file name (`./` dropped) and the digest.
    public enum ListedFile: Equatable, Sendable {
        case file(name: String, hex: String)
        /// A line that is not `<64 hex> <name>`.
        case unreadable(String)
        /// A name outside the bundle directory (absolute, or with `..`).
        case outside(String)
    }

    /// The lines of a `SHA256SUMS` (coreutils format, text or binary mode).
    public static func listedFiles(inSHA256SUMS text: String) -> [ListedFile] {
        text.split(separator: "\n").filter { !$0.isEmpty }.map { line in
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].count == 64, parts[0].allSatisfy(\.isHexDigit) else { return .unreadable(String(line)) }
            var name = parts[1].hasPrefix(" ") || parts[1].hasPrefix("*") ? String(parts[1].dropFirst()) : String(parts[1])
            if name.hasPrefix("./") { name.removeFirst(2) }
            if name.hasPrefix("/") || name.split(separator: "/").contains("..") { return .outside(name) }
            return .file(name: name, hex: String(parts[0]).lowercased())
        }
    }

    /// The files of `directory` that its `SHA256SUMS` lists, or a `.gostsum` is for, and that
    /// are not there: a bundle that lost a tar on the way to the closed site.
    public static func listedButMissing(in directory: String) -> (missing: [String], list: String)? {
        let manager = FileManager.default
        var missing: [String] = [], lists: [String] = []
        if let text = try? String(contentsOfFile: TarIO.joinPath(directory, "SHA256SUMS"), encoding: .utf8) {
            let gone = listedFiles(inSHA256SUMS: text).compactMap { listed -> String? in
                guard case let .file(name, _) = listed, !manager.fileExists(atPath: TarIO.joinPath(directory, name)) else { return nil }
                return name
            }
            if !gone.isEmpty { missing += gone; lists.append("SHA256SUMS") }
        }
        let gostsums = ((try? manager.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".gostsum") }
        let unmatched = gostsums.map { String($0.dropLast(".gostsum".count)) }.filter { !manager.fileExists(atPath: TarIO.joinPath(directory, $0)) }
        if !unmatched.isEmpty { missing += unmatched; lists.append("their .gostsum files") }
        return missing.isEmpty ? nil : (Array(Set(missing)).sorted(), lists.joined(separator: " and "))
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
