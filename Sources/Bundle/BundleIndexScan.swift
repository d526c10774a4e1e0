#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import OCI
import Synchronization

/// Indexes tars: one pass over each with `TarReader` (headers; the data of `index.json` and
/// `oci-layout` entries is read, every other entry's data is skipped), then the layouts.
enum TarScanner {
    struct Scanned {
        let tar: BundleIndex.Tar
        let layouts: [(BundleIndex.Layout, [String: TarSpan])]
        /// Regular-file names the tar holds more than once, with how many times.
        var duplicates: [BundleIndex.DuplicateEntry] = []
    }

    /// Largest `index.json` read (a platform root layout lists thousands of digests).
    static let indexLimit = 64 << 20
    /// Largest `oci-layout` read.
    static let ociLayoutLimit = 64 << 10

    /// Scans every tar, several at once; the first error in tar order is thrown.
    static func scanAll(_ tars: [BundleIndex.Tar]) throws(BundleError) -> [Scanned] {
        let results = Mutex([Result<Scanned, BundleError>?](repeating: nil, count: tars.count))
        DispatchQueue.concurrentPerform(iterations: tars.count) { i in
            let result: Result<Scanned, BundleError>
            do throws(BundleError) { result = .success(try scan(tars[i])) } catch { result = .failure(error) }
            results.withLock { $0[i] = result }
        }
        // Every tar that cannot be read is named, not just the first: an operator fixes the copy once.
        var scanned = [Scanned]()
        var failures = [BundleError]()
        for (tar, result) in zip(tars, results.withLock { $0 }) {
            switch result {
            case let .success(found)?: scanned.append(found)
            case let .failure(error)?: failures.append(error)
            case nil: failures.append(.corrupt(file: tar.name, detail: "the tar was not indexed"))
            }
        }
        if failures.count == 1 { throw failures[0] }
        if failures.count > 1 { throw .severalTars(failures) }
        return scanned
    }

    static func scan(_ tar: BundleIndex.Tar) throws(BundleError) -> Scanned {
        let display = displayName(tar)
        let total = tar.size
        var indexes = [String: [UInt8]]()          // layout directory -> index.json
        var ociLayouts = [String: [UInt8]]()       // layout directory -> oci-layout
        var blobs = [String: [String: TarSpan]]()  // layout directory -> hex -> data
        var seen = [String: Int]()                 // name -> times
        do {
            try TarReader.forEachEntry(files: tar.files) { entry, data in
                let name = try normalize(entry.name, tar: tar.name)
                guard entry.isRegularFile, !name.isEmpty else { return }
                seen[name, default: 0] += 1
                guard entry.size >= 0, entry.dataOffset >= 0, entry.dataOffset <= total - entry.size else {
                    // The data would run past the last file: name it (a missing further chunk is likely).
                    throw BundleError.corrupt(
                        file: tar.files.last ?? display, detail: "entry '\(entry.name)' claims data beyond the end of the tar")
                }
                let parts = name.split(separator: "/", omittingEmptySubsequences: true)
                let last = parts[parts.count - 1]
                let directory = parts.dropLast().joined(separator: "/")
                // Later duplicates replace earlier ones, as extracting the tar would.
                if last == "index.json" {
                    indexes[directory] = try data.readAll(limit: indexLimit)
                } else if last == "oci-layout" {
                    ociLayouts[directory] = try data.readAll(limit: ociLayoutLimit)
                } else if parts.count >= 3, parts[parts.count - 3] == "blobs", parts[parts.count - 2] == "sha256",
                    isDigestHex(last)
                {
                    let layout = parts.dropLast(3).joined(separator: "/")
                    blobs[layout, default: [:]][String(last)] = TarSpan(offset: entry.dataOffset, size: entry.size)
                }
            }
        } catch let error as BundleError {
            throw refine(error, tar: tar)
        } catch {
            throw .corrupt(file: display, detail: "\(error)")
        }

        for directory in Set(blobs.keys).union(ociLayouts.keys).sorted() where indexes[directory] == nil {
            throw .missingLayoutIndex(tar: tar.name, directory: directory)
        }
        let prefix = relocationPrefix(tarName: tar.name, directories: Array(indexes.keys))
        var layouts = [(BundleIndex.Layout, [String: TarSpan])]()
        for (directory, index) in indexes.sorted(by: { $0.key < $1.key }) {
            guard let ociLayout = ociLayouts[directory] else {
                throw .missingOCILayout(tar: tar.name, directory: directory)
            }
            try checkOCILayout(ociLayout, tar: display, directory: directory)
            let descriptors = try parseIndex(index, tar: display, directory: directory)
            let path = prefix.isEmpty ? directory : (directory.isEmpty ? prefix : prefix + "/" + directory)
            layouts.append((
                BundleIndex.Layout(tar: tar.name, path: path, directory: directory, descriptors: descriptors),
                blobs[directory] ?? [:]
            ))
        }
        let duplicates = seen.filter { $0.value > 1 }.sorted { $0.key < $1.key }
            .map { BundleIndex.DuplicateEntry(tar: tar.name, name: $0.key, count: $0.value) }
        return Scanned(tar: tar, layouts: layouts, duplicates: duplicates)
    }

    /// The entry name without "./" and "." components; refuses names that reach outside the
    /// tar's tree. "" for the tar's root directory entry.
    static func normalize(_ raw: String, tar: String) throws(BundleError) -> String {
        if raw.hasPrefix("/") {
            throw .unsafeEntryName(tar: tar, name: raw, reason: "it is an absolute path")
        }
        var parts = [Substring]()
        for component in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if component == "." { continue }
            if component == ".." {
                throw .unsafeEntryName(tar: tar, name: raw, reason: "its '..' would reach outside the tar's tree")
            }
            parts.append(component)
        }
        return parts.joined(separator: "/")
    }

    /// Where older generations' layouts belong: a `module-<name>.tar` with nothing under
    /// `modules/` holds one module at its root (-> `modules/<name>`); a `security.tar` with
    /// nothing under `security/` holds the databases at its root (-> `security`).
    static func relocationPrefix(tarName: String, directories: [String]) -> String {
        func holds(_ root: String) -> Bool {
            directories.contains { $0 == root || $0.hasPrefix(root + "/") }
        }
        if tarName.hasPrefix("module-"), tarName.hasSuffix(".tar") {
            let module = tarName.dropFirst("module-".count).dropLast(".tar".count)
            if !module.isEmpty, !holds("modules") { return "modules/" + module }
        }
        if tarName == "security.tar", !holds("security") { return "security" }
        return ""
    }

    static func isDigestHex(_ name: Substring) -> Bool {
        name.utf8.count == 64 && name.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// How errors name a tar: its file, or for a chunked tar its logical path.
    static func displayName(_ tar: BundleIndex.Tar) -> String {
        guard tar.files.count > 1 || tar.isChunked, let first = tar.files.first else { return tar.files.first ?? tar.name }
        return TarIO.joinPath(TarIO.splitPath(first).directory, tar.name)
            + " (\(tar.files.count) chunk file\(tar.files.count == 1 ? "" : "s"))"
    }

    /// Adds what the chunk files suggest to a damage report about a chunked tar: a chunk
    /// much smaller than the others was likely cut short; damage at the end of the last
    /// chunk may be a missing further chunk.
    static func refine(_ error: BundleError, tar: BundleIndex.Tar) -> BundleError {
        guard tar.isChunked, case let .corrupt(file, detail) = error, let lastFile = tar.files.last else { return error }
        let failedIn = TarIO.splitPath(file).name
        // Chunks other than the last hold (about) the chunk size each; one clearly smaller
        // was cut short, and the damage the reader met later comes from it.
        let leading = tar.fileSizes.dropLast()
        if let largest = leading.max(), largest > 0 {
            let short = leading.indices.filter { leading[$0] < largest / 10 * 9 }
            if let first = short.first {
                let names = short.map { TarIO.splitPath(tar.files[$0]).name }
                return .corrupt(
                    file: tar.files[first],
                    detail: "it has \(leading[first]) bytes, fewer than the other chunks of \(tar.name) (\(largest)): "
                        + "it was cut short when copied"
                        + (short.count > 1 ? " (so were \(names.dropFirst().joined(separator: ", ")))" : "")
                        + "; reading the tar failed in \(failedIn): \(detail)")
            }
        }
        var hints = [String]()
        if file == lastFile {
            let next = TarIO.splitPath(ChunkedFileWriter.chunkPath(tar.name, index: tar.files.count)).name
            hints.append("if \(tar.name) has more than \(tar.files.count) chunk file\(tar.files.count == 1 ? "" : "s"), "
                + "\(next) is missing")
        }
        guard !hints.isEmpty else { return error }
        return .corrupt(file: file, detail: detail + "; " + hints.joined(separator: "; "))
    }

    // MARK: - layout files

    private struct OCILayoutDocument: Decodable {
        var imageLayoutVersion: String
    }

    private struct IndexDocument: Decodable {
        var schemaVersion: Int?
        var mediaType: String?
        var manifests: [Descriptor]?
    }

    static func checkOCILayout(_ bytes: [UInt8], tar: String, directory: String) throws(BundleError) {
        let file = directory.isEmpty ? "oci-layout" : directory + "/oci-layout"
        let document: OCILayoutDocument
        do {
            document = try JSONDecoder().decode(OCILayoutDocument.self, from: Data(bytes))
        } catch {
            throw .corrupt(file: tar, detail: "\(file) is not an OCI layout file (\(describe(error)))")
        }
        guard document.imageLayoutVersion.hasPrefix("1.") else {
            throw .corrupt(
                file: tar, detail: "\(file) has imageLayoutVersion '\(document.imageLayoutVersion)', expected 1.0.0")
        }
    }

    /// The descriptors of an `index.json`. Its top-level mediaType may be the layout type
    /// (newer d8), the index type (older d8), or absent.
    static func parseIndex(_ bytes: [UInt8], tar: String, directory: String) throws(BundleError) -> [Descriptor] {
        let file = directory.isEmpty ? "index.json" : directory + "/index.json"
        let document: IndexDocument
        do {
            document = try JSONDecoder().decode(IndexDocument.self, from: Data(bytes))
        } catch {
            throw .corrupt(file: tar, detail: "\(file) is not a valid OCI index (\(describe(error)))")
        }
        if let version = document.schemaVersion, version != 2 {
            throw .corrupt(file: tar, detail: "\(file) has schemaVersion \(version), expected 2")
        }
        if let raw = document.mediaType {
            let type = MediaType(contentType: raw)
            guard type == .ociLayout || type == .ociIndex else {
                throw .corrupt(
                    file: tar,
                    detail: "\(file) has mediaType '\(raw)', expected \(MediaType.ociLayout) or \(MediaType.ociIndex)")
            }
        }
        return document.manifests ?? []
    }

    /// A short account of a JSON decoding error: where and what.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func at(_ path: [any CodingKey]) -> String {
            let text = path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return text.isEmpty ? "" : " at \(text)"
        }
        switch error {
        case let .keyNotFound(key, context):
            return "no '\(key.stringValue)' field\(at(context.codingPath))"
        case let .typeMismatch(_, context), let .valueNotFound(_, context), let .dataCorrupted(context):
            if let underlying = context.underlyingError, !(underlying is DecodingError), context.codingPath.isEmpty {
                return "not JSON: \(context.debugDescription)"
            }
            return "\(context.debugDescription)\(at(context.codingPath))"
        @unknown default:
            return "\(error)"
        }
    }
}
