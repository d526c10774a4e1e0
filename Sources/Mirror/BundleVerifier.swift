import Bundle
import DKP
import Dispatch
import Foundation
import OCI
import Streams
import Synchronization
import Version

/// One thing wrong with a bundle, named precisely.
public struct VerifyProblem: Sendable, Codable, CustomStringConvertible {
    public var check: String
    public var message: String
    public var description: String { message }
}

public struct VerifyReport: Sendable, Codable {
    public var directory: String
    public var files: Int
    public var layouts: Int
    public var references: Int
    public var blobs: Int
    public var bytesHashed: Int64
    public var seconds: Double
    public var bytesPerSecond: Double
    public var problems: [VerifyProblem]
    public var ok: Bool { problems.isEmpty }
}

/// Checks a bundle offline: SHA256SUMS, every layout's index.json references and their
/// manifests, configs, layers and children, every blob's digest and size, every digest the
/// bundle's images_digests.json files require, and that each channel version's controller
/// is there. Blobs are hashed in parallel on all cores.
public struct BundleVerifier: Sendable {
    public let bundle: BundleIndex
    public let directory: String

    public init(bundle: BundleIndex, directory: String) {
        self.bundle = bundle
        self.directory = directory
    }

    public func verify() async -> VerifyReport {
        let started = ContinuousClock.now
        var problems: [VerifyProblem] = []
        let hashed = Mutex<Int64>(0)

        problems += checkSums(hashed: hashed)
        problems += checkGostsums()

        // Structure: every reference's manifest tree is complete.
        var references = 0
        var wanted: [(BundleIndex.Layout, Digest, Int64)] = []
        for layout in bundle.layouts {
            for descriptor in layout.descriptors {
                references += 1
                problems += checkTree(descriptor, layout: layout)
            }
            for digest in bundle.blobs(in: layout) {
                if let location = bundle.blob(digest, in: layout) { wanted.append((layout, digest, location.size)) }
            }
        }

        // Every blob hashes to its name (largest first keeps both cores busy to the end).
        let blobs = wanted.sorted { $0.2 > $1.2 }
        let blobProblems = Mutex<[VerifyProblem]>([])
        let bundle = self.bundle
        DispatchQueue.concurrentPerform(iterations: blobs.count) { i in
            let (layout, digest, _) = blobs[i]
            guard let location = bundle.blob(digest, in: layout) else { return }
            let hasher = SHA256()
            var count: Int64 = 0
            do {
                try bundle.read(location, pieceSize: 4 << 20) { piece in
                    hasher.update(piece)
                    count += Int64(piece.count)
                }
                hashed.withLock { $0 += count }
                let actual = hasher.finalize()
                if actual != digest {
                    blobProblems.withLock {
                        $0.append(VerifyProblem(check: "blob", message: "\(layout.tar): \(Self.name(layout))/blobs/sha256/\(digest.hex) is corrupt: its bytes hash to \(actual)"))
                    }
                }
            } catch {
                blobProblems.withLock { $0.append(VerifyProblem(check: "blob", message: "\(layout.tar): cannot read blob \(digest): \(error)")) }
            }
        }
        problems += blobProblems.withLock { $0 }.sorted { $0.message < $1.message }

        problems += await checkRequiredDigests()
        problems += checkChannels()

        let seconds = (ContinuousClock.now - started).inSeconds
        let bytes = hashed.withLock { $0 }
        return VerifyReport(directory: directory, files: bundle.tars.reduce(0) { $0 + $1.files.count },
                            layouts: bundle.layouts.count, references: references, blobs: wanted.count,
                            bytesHashed: bytes, seconds: seconds, bytesPerSecond: seconds > 0 ? Double(bytes) / seconds : 0,
                            problems: problems)
    }

    static func name(_ layout: BundleIndex.Layout) -> String { layout.directory.isEmpty ? "." : layout.directory }

    /// SHA256SUMS (coreutils format), when the bundle has one: every listed file hashes as listed.
    private func checkSums(hashed: borrowing Mutex<Int64>) -> [VerifyProblem] {
        let path = directory + "/SHA256SUMS"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        var problems: [VerifyProblem] = []
        var entries: [(name: String, hex: String)] = []
        for line in text.split(separator: "\n") where !line.isEmpty {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].count == 64 else {
                problems.append(VerifyProblem(check: "SHA256SUMS", message: "SHA256SUMS: unreadable line '\(line.prefix(80))'"))
                continue
            }
            let name = parts[1].hasPrefix(" ") || parts[1].hasPrefix("*") ? String(parts[1].dropFirst()) : String(parts[1])
            entries.append((name, String(parts[0]).lowercased()))
        }
        let paths = entries.map { directory + "/" + $0.name }
        for (entry, path) in zip(entries, paths) where !FileManager.default.fileExists(atPath: path) {
            problems.append(VerifyProblem(check: "SHA256SUMS", message: "\(entry.name) is listed in SHA256SUMS but missing"))
        }
        let present = zip(entries, paths).filter { FileManager.default.fileExists(atPath: $0.1) }
        guard let digests = try? Checksums.sha256(ofFiles: present.map(\.1)) else {
            problems.append(VerifyProblem(check: "SHA256SUMS", message: "cannot read the files SHA256SUMS lists"))
            return problems
        }
        for ((entry, path), digest) in zip(present, digests) {
            let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int64) ?? 0
            hashed.withLock { $0 += size }
            if digest.hex != entry.hex {
                problems.append(VerifyProblem(check: "SHA256SUMS", message: "\(entry.name) does not match SHA256SUMS: expected \(entry.hex), got \(digest.hex)"))
            }
        }
        return problems
    }

    /// Every `<file>.gostsum` (Streebog-256, as d8 writes them) matches its file.
    private func checkGostsums() -> [VerifyProblem] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0.hasSuffix(".gostsum") }.sorted() ?? []
        let results = Mutex<[VerifyProblem]>([])
        let directory = self.directory
        DispatchQueue.concurrentPerform(iterations: names.count) { i in
            let name = names[i]
            let file = String(name.dropLast(".gostsum".count))
            let expected = ((try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
            do {
                let actual = try Checksums.streebog256Hex(ofFile: directory + "/" + file)
                if actual != expected {
                    results.withLock { $0.append(VerifyProblem(check: "gostsum", message: "\(file) does not match \(name): expected \(expected), got \(actual)")) }
                }
            } catch {
                results.withLock { $0.append(VerifyProblem(check: "gostsum", message: "\(name): cannot read \(file): \(error)")) }
            }
        }
        return results.withLock { $0 }.sorted { $0.message < $1.message }
    }

    /// A reference's manifest (and an index's children) present, intact, and every config and layer present with its size.
    private func checkTree(_ descriptor: Descriptor, layout: BundleIndex.Layout) -> [VerifyProblem] {
        let tag = descriptor.annotations?["io.deckhouse.image.short_tag"] ?? descriptor.digest.hex
        let what = "\(layout.tar): \(Self.name(layout)) \(tag)"
        guard let location = bundle.blob(descriptor.digest, in: layout) else {
            return [VerifyProblem(check: "reference", message: "\(what): manifest \(descriptor.digest) is missing")]
        }
        guard let bytes = try? bundle.readSmall(location) else {
            return [VerifyProblem(check: "reference", message: "\(what): manifest \(descriptor.digest) cannot be read")]
        }
        guard SHA256.digest(of: bytes) == descriptor.digest else { return [] }  // reported by the blob pass
        guard let document = try? ManifestDocument.parse(bytes, contentType: descriptor.mediaType) else {
            return [VerifyProblem(check: "reference", message: "\(what): manifest \(descriptor.digest) is not a valid manifest")]
        }
        var problems: [VerifyProblem] = []
        switch document {
        case let .image(image):
            for blob in [image.config] + image.layers {
                guard let found = bundle.blob(blob.digest, in: layout) else {
                    problems.append(VerifyProblem(check: "reference", message: "\(what): blob \(blob.digest) that manifest \(descriptor.digest) lists is missing"))
                    continue
                }
                if found.size != blob.size {
                    problems.append(VerifyProblem(check: "reference", message: "\(what): blob \(blob.digest) has \(found.size) bytes, its manifest says \(blob.size)"))
                }
            }
        case let .index(index):
            for child in index.manifests { problems += checkTree(child, layout: layout) }
        }
        return problems
    }

    /// The digests images_digests.json requires, by layout: the platform's in the root layout
    /// (from each version's controller image), each module's in its own layout.
    public func requiredDigests() async -> [(layout: BundleIndex.Layout, version: String, required: [(source: String, digest: Digest)])] {
        var result: [(BundleIndex.Layout, String, [(String, Digest)])] = []
        for layout in bundle.layouts where layout.path.isEmpty || (layout.path.hasPrefix("modules/") && layout.path.split(separator: "/").count == 2) {
            let file = layout.path.isEmpty ? "deckhouse/modules/images_digests.json" : "images_digests.json"
            let module = layout.path.split(separator: "/").last.map(String.init) ?? ""
            var seen = Set<Digest>()
            for descriptor in layout.descriptors {
                let tag = descriptor.annotations?["io.deckhouse.image.short_tag"] ?? ""
                guard Version(tag: tag) != nil, seen.insert(descriptor.digest).inserted,
                      let files = try? await readFiles([file], image: descriptor, layout: layout),
                      let json = files[file] else { continue }
                result.append((layout, tag, Self.labelled(json, module: module)))
            }
        }
        return result
    }

    /// `{"module": {"image": "sha256:..."}}` as (module/image, digest) pairs; other shapes by digest alone.
    static func labelled(_ json: [UInt8], module: String) -> [(String, Digest)] {
        if let map = try? JSONDecoder().decode([String: [String: String]].self, from: Data(json)) {
            return map.sorted { $0.key < $1.key }.flatMap { moduleName, images in
                images.sorted { $0.key < $1.key }.compactMap { image, value in
                    (try? Digest(parsing: value)).map { ("module/\(module.isEmpty ? moduleName : module)/\(image)", $0) }
                }
            }
        }
        return digests(in: json).map { ("images_digests.json", $0) }
    }

    private func checkRequiredDigests() async -> [VerifyProblem] {
        var problems: [VerifyProblem] = []
        for (layout, version, required) in await requiredDigests() {
            let present = Set(layout.descriptors.map(\.digest))
            for (source, digest) in required where !present.contains(digest) {
                problems.append(VerifyProblem(check: "images_digests.json",
                    message: "\(layout.tar): \(Self.name(layout)) \(version) requires \(digest) (\(source)), which the bundle does not hold"))
            }
        }
        return problems
    }

    /// Every channel alias points at something present, and each channel version's controller is in the root layout.
    private func checkChannels() -> [VerifyProblem] {
        guard let channels = bundle.layout(at: "release-channel") else { return [] }
        let rootTags = Set(bundle.layout(at: "")?.descriptors.compactMap { $0.annotations?["io.deckhouse.image.short_tag"] } ?? [])
        var problems: [VerifyProblem] = []
        for descriptor in channels.descriptors {
            let tag = descriptor.annotations?["io.deckhouse.image.short_tag"] ?? ""
            guard Version(tag: tag) != nil, bundle.layout(at: "") != nil, !rootTags.contains(tag) else { continue }
            problems.append(VerifyProblem(check: "channels", message: "\(channels.tar): release-channel \(tag) has no controller image \(tag) in the root layout"))
        }
        return problems
    }

    /// Files out of an image held in the bundle (top layer first).
    private func readFiles(_ paths: Set<String>, image descriptor: Descriptor, layout: BundleIndex.Layout) async throws -> [String: [UInt8]] {
        guard let location = bundle.blob(descriptor.digest, in: layout) else { return [:] }
        var document = try ManifestDocument.parse(try bundle.readSmall(location), contentType: descriptor.mediaType)
        if case let .index(index) = document, let child = index.manifests.first(where: { $0.platform?.architecture == "amd64" }) ?? index.manifests.first,
           let childLocation = bundle.blob(child.digest, in: layout) {
            document = try ManifestDocument.parse(try bundle.readSmall(childLocation), contentType: child.mediaType)
        }
        guard case let .image(image) = document else { return [:] }
        let locations = image.layers.map { bundle.blob($0.digest, in: layout) }
        return try await LayerFiles.readFiles(paths, layerCount: locations.count) { index in
            LayerBytes(location: locations[index])
        }
    }
}

/// A layer's bytes out of the bundle, in 1 MiB pieces, for `LayerFiles`.
struct LayerBytes: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let location: BlobLocation?

    func makeAsyncIterator() -> Iterator { Iterator(segments: location?.segments ?? []) }

    struct Iterator: AsyncIteratorProtocol {
        var segments: [(path: String, offset: Int64, length: Int64)]
        var reader: ChunkedFileReader?

        mutating func next() async throws -> [UInt8]? {
            while true {
                if reader == nil {
                    guard !segments.isEmpty else { return nil }
                    let s = segments.removeFirst()
                    reader = try ChunkedFileReader(path: s.path, offset: s.offset, length: s.length)
                }
                if let chunk = try reader?.next() { return Array(chunk) }
                reader = nil
            }
        }
    }
}
