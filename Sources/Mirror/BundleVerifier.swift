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
    /// Bytes read and hashed (each byte of the bundle once).
    public var bytesHashed: Int64
    public var seconds: Double
    public var bytesPerSecond: Double
    /// With `--deep`: the layers checked against their diff_ids (decompressed, or plain tars by digest).
    public var deep: DeepSummary?
    public var problems: [VerifyProblem]
    /// What the short tag rule decided (descriptors without a short tag, a tag given two
    /// digests): what push will do with them, not damage.
    public var warnings: [String]
    /// A differential bundle (`pull --against`): what it left out; nil for a full bundle.
    public var differential: DifferentialSummary? = nil
    public var ok: Bool { problems.isEmpty }
}

/// Checks a bundle offline: SHA256SUMS and .gostsum files, every layout's index.json
/// references and their manifests, configs, layers and children, every blob's digest and
/// size, names a tar holds twice, every digest the bundle's images_digests.json files
/// require, and that each channel version's controller is there; with `deep`, every layer's
/// diff_id. Each byte is read once, hashed on all cores (`VerifyPass`).
public struct BundleVerifier: Sendable {
    public let bundle: BundleIndex
    public let directory: String

    public init(bundle: BundleIndex, directory: String) {
        self.bundle = bundle
        self.directory = directory
    }

    /// Checks the bundle; with `deep`, also decompresses every layer and checks it against
    /// its image config's `rootfs.diff_ids`.
    public func verify(deep: Bool = false) async -> VerifyReport {
        let started = ContinuousClock.now
        var problems: [VerifyProblem] = []

        let sums = readSHA256SUMS()
        let gosts = readGostsums()
        problems += sums.problems + unlistedFileProblems(listed: sums.expected)

        // Structure: every reference's manifest tree is complete.
        var references = 0
        var warnings = noListsWarning(gostsums: gosts.expected).map { [$0] } ?? []
        var wanted: [(layout: BundleIndex.Layout, location: BlobLocation)] = []
        let leftOut = LeftOutTally(directory: directory)
        for layout in bundle.layouts {
            let resolved = layout.resolvedTags()
            warnings += resolved.warnings
            problems += resolved.invalid.map { VerifyProblem(check: "name", message: $0) }
            if let problem = layout.pathProblem { problems.append(VerifyProblem(check: "name", message: problem)) }
            for descriptor in layout.descriptors {
                references += 1
                problems += checkTree(descriptor, layout: layout, leftOut: leftOut)
            }
            // Every copy: a layout several tars hold has its blobs checked in each of them.
            for digest in bundle.blobs(in: layout) {
                for location in bundle.blobCopies(digest, in: layout) { wanted.append((layout, location)) }
            }
        }
        problems += duplicateEntryProblems()
        let differential = differentialProblems(leftOut, sums: sums.expected)
        problems += differential.problems
        warnings += differential.warnings

        // One read of every byte: whole-file hashes and blob hashes from the same pieces.
        let jobs = passJobs(wanted: wanted, sums: sums.expected, gosts: gosts.expected)
        let results = VerifyPass(bundle: bundle).run(jobs)
        problems += fileProblems(results, sums: sums.expected, gosts: gosts.expected) + gosts.problems
        var blobProblems: [VerifyProblem] = []
        var damaged = Set<String>()
        for (id, (layout, location)) in wanted.enumerated() {
            let directory = layout.parts.first { $0.tar == location.tar }?.directory ?? layout.directory
            let blobName = "\(directory.isEmpty ? "." : directory)/blobs/sha256/\(location.digest.hex)"
            switch results.blobs[id] {
            case .intact: continue
            case let .corrupt(actual):
                blobProblems.append(VerifyProblem(check: "blob", message: "\(location.tar): \(blobName) is corrupt: its bytes hash to \(actual)"))
            case let .unreadable(reason):
                blobProblems.append(VerifyProblem(check: "blob", message: "\(location.tar): cannot read blob \(blobName): \(reason)"))
            case nil:
                blobProblems.append(VerifyProblem(check: "blob", message: "\(location.tar): blob \(blobName) was not hashed (its tar could not be read)"))
            }
            damaged.insert(layout.path + "@" + location.digest.hex)
        }
        problems += blobProblems.sorted { $0.message < $1.message }

        problems += await checkRequiredDigests()
        problems += checkChannels()

        var deepReport = DeepReport()
        if deep {
            deepReport = checkDiffIDs(skipping: damaged)
            problems += deepReport.problems
        }

        let seconds = (ContinuousClock.now - started).inSeconds
        let offlineSeconds = seconds - deepReport.seconds  // the rate is of the read, --deep reported on its own
        let bytes = results.bytesRead
        var report = VerifyReport(directory: directory, files: bundle.tars.reduce(0) { $0 + $1.files.count },
                            layouts: bundle.layouts.count, references: references, blobs: wanted.count,
                            bytesHashed: bytes, seconds: seconds,
                            bytesPerSecond: offlineSeconds > 0 ? Double(bytes) / offlineSeconds : 0,
                            deep: deep ? DeepSummary(layers: deepReport.layers, plainLayers: deepReport.plainLayers,
                                                     skipped: deepReport.skipped,
                                                     compressedBytes: deepReport.compressedBytes,
                                                     uncompressedBytes: deepReport.uncompressedBytes,
                                                     seconds: deepReport.seconds) : nil,
                            problems: problems, warnings: warnings)
        report.differential = differential.summary
        return report
    }

    static func name(_ layout: BundleIndex.Layout) -> String { layout.directory.isEmpty ? "." : layout.directory }

    /// The hashing work: per tar, one sequential read when any of its files needs a
    /// whole-file hash, else one job per blob; files outside the tars that SHA256SUMS or a
    /// `.gostsum` covers, on their own.
    private func passJobs(wanted: [(layout: BundleIndex.Layout, location: BlobLocation)],
                          sums: [String: String], gosts: [String: String]) -> [VerifyPass.Job] {
        var jobs: [VerifyPass.Job] = []
        var inTars = Set<String>()
        var byTar = [String: [VerifyPass.Blob]]()
        for tar in bundle.tars {
            var base: Int64 = 0
            var bases = [String: Int64]()
            for (path, size) in zip(tar.files, tar.fileSizes) {
                bases[path] = base
                base += size
            }
            for (id, item) in wanted.enumerated() where item.location.tar == tar.name {
                let location = item.location
                let start = location.segments.first.map { (bases[$0.path] ?? 0) + $0.offset } ?? 0
                byTar[tar.name, default: []].append(VerifyPass.Blob(id: id, digest: location.digest, start: start,
                                                                    size: location.size, location: location))
            }
            let files = zip(tar.files, tar.fileSizes).map { path, size in
                let name = TarName.last(path)
                inTars.insert(name)
                return VerifyPass.File(path: path, size: size, sha256: sums[name] != nil, gost: gosts[name] != nil)
            }
            let blobs = (byTar[tar.name] ?? []).sorted { $0.start < $1.start }
            if files.contains(where: { $0.sha256 || $0.gost }) {
                jobs.append(.tar(files: files, blobs: blobs))
            } else {
                jobs += blobs.map { .blob($0) }
            }
        }
        for name in Set(sums.keys).union(gosts.keys).sorted() where !inTars.contains(name) {
            let path = directory + "/" + name
            guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber else { continue }
            jobs.append(.file(VerifyPass.File(path: path, size: size.int64Value, sha256: sums[name] != nil, gost: gosts[name] != nil)))
        }
        return jobs
    }

    /// SHA256SUMS and `.gostsum` files against the hashes of the pass.
    private func fileProblems(_ results: VerifyPass.Results, sums: [String: String], gosts: [String: String]) -> [VerifyProblem] {
        var paths = [String: String]()  // name -> path read
        for tar in bundle.tars { for path in tar.files { paths[TarName.last(path)] = path } }
        func path(_ name: String) -> String { paths[name] ?? directory + "/" + name }
        var problems: [VerifyProblem] = []
        for (name, expected) in sums.sorted(by: { $0.key < $1.key }) {
            let file = path(name)
            if let error = results.fileErrors[file] {
                problems.append(VerifyProblem(check: "SHA256SUMS", message: "\(name) (listed in SHA256SUMS) cannot be read: \(error)"))
            } else if let actual = results.sha256[file], actual.hex != expected {
                problems.append(VerifyProblem(check: "SHA256SUMS", message: "\(name) does not match SHA256SUMS: expected \(expected), got \(actual.hex)"))
            }
        }
        for (name, expected) in gosts.sorted(by: { $0.key < $1.key }) {
            let file = path(name)
            if let error = results.fileErrors[file] {
                problems.append(VerifyProblem(check: "gostsum", message: "\(name).gostsum: cannot read \(name): \(error)"))
            } else if let actual = results.gost[file], actual != expected {
                problems.append(VerifyProblem(check: "gostsum", message: "\(name) does not match \(name).gostsum: expected \(expected), got \(actual)"))
            }
        }
        return problems
    }

    /// A reference's manifest (and an index's children) present, intact, and every config and layer present with its size.
    private func checkTree(_ descriptor: Descriptor, layout: BundleIndex.Layout, leftOut: LeftOutTally) -> [VerifyProblem] {
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
                    // A differential bundle's left-out blob is absent by design.
                    if let message = leftOut.absentMessage(blob, what: what, manifest: descriptor.digest) {
                        problems.append(VerifyProblem(check: "reference", message: message))
                    }
                    continue
                }
                if found.size != blob.size {
                    problems.append(VerifyProblem(check: "reference", message: "\(what): blob \(blob.digest) has \(found.size) bytes, its manifest says \(blob.size)"))
                }
            }
        case let .index(index):
            for child in index.manifests { problems += checkTree(child, layout: layout, leftOut: leftOut) }
        }
        return problems
    }

    /// The digests images_digests.json requires, by layout: the platform's in the root layout
    /// (from each version's controller image), each module's and each package's in its own
    /// layout (`modules/<m>`, `packages/<p>`, from each version's image).
    public func requiredDigests() async -> [(layout: BundleIndex.Layout, version: String, required: [(source: String, digest: Digest)])] {
        var result: [(BundleIndex.Layout, String, [(String, Digest)])] = []
        for layout in bundle.layouts where layout.path.isEmpty || Self.isItemRoot(layout.path) {
            let file = layout.path.isEmpty ? Self.controllerDigestsFile : "images_digests.json"
            let parts = layout.path.split(separator: "/").map(String.init)
            let module = parts.last ?? ""
            var seen = Set<Digest>()
            for tagged in layout.resolvedTags().tags {
                guard Version(tag: tagged.tag) != nil, seen.insert(tagged.descriptor.digest).inserted,
                      let files = try? await readFiles([file], image: tagged.descriptor, layout: layout),
                      let json = files[file] else { continue }
                let labelled = parts.first == "packages"
                    ? Self.digests(in: json).map { ("package/\(module)", $0) }
                    : Self.labelled(json, module: module)
                result.append((layout, tagged.tag, labelled))
            }
        }
        return result
    }

    static let controllerDigestsFile = "deckhouse/modules/images_digests.json"

    /// `modules/<m>` or `packages/<p>`: a layout whose version images carry images_digests.json.
    static func isItemRoot(_ path: String) -> Bool {
        let parts = path.split(separator: "/")
        return parts.count == 2 && (parts[0] == "modules" || parts[0] == "packages")
    }

    /// `deckhouse/modules/images_digests.json` of the controller image tagged `tag` in the root
    /// layout, nil when the bundle does not hold it.
    public func controllerImagesDigests(tag: String) async -> [UInt8]? {
        guard let root = bundle.layout(at: ""), let descriptor = root.resolvedTags().descriptor(tagged: tag),
              let files = try? await readFiles([Self.controllerDigestsFile], image: descriptor, layout: root) else { return nil }
        return files[Self.controllerDigestsFile]
    }

    static func digests(in json: [UInt8]) -> [Digest] { DKP.digests(in: json) }

    /// `{"module": {"image": "sha256:..."}}` as (module/image, digest) pairs; other shapes by digest alone.
    static func labelled(_ json: [UInt8], module: String) -> [(String, Digest)] {
        if let map = try? JSONDecoder().decode([String: [String: String]].self, from: Data(json)) {
            return map.sorted { $0.key < $1.key }.flatMap { moduleName, images in
                images.sorted { $0.key < $1.key }.compactMap { image, value in
                    (try? Digest(parsing: value)).map { ("module/\(module.isEmpty ? moduleName : module)/\(image)", $0) }
                }
            }
        }
        return DKP.digests(in: json).map { ("images_digests.json", $0) }
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
        let rootTags = Set(bundle.layout(at: "")?.resolvedTags().tags.map(\.tag) ?? [])
        var problems: [VerifyProblem] = []
        for tag in channels.resolvedTags().tags.map(\.tag) {
            guard Version(tag: tag) != nil, bundle.layout(at: "") != nil, !rootTags.contains(tag) else { continue }
            problems.append(VerifyProblem(check: "channels", message: "\(channels.tar): release-channel \(tag) has no controller image \(tag) in the root layout"))
        }
        return problems
    }

    /// Files out of an image held in the bundle (top layer first).
    private func readFiles(_ paths: Set<String>, image descriptor: Descriptor, layout: BundleIndex.Layout) async throws -> [String: [UInt8]] {
        guard let location = bundle.blob(descriptor.digest, in: layout) else { return [:] }
        var document = try ManifestDocument.parse(try bundle.readSmall(location), contentType: descriptor.mediaType)
        if case let .index(index) = document, let child = index.deckhousePlatformChild,
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

    func makeAsyncIterator() -> Iterator {
        Iterator(reader: location.map { BlobSegmentReader($0) })
    }

    struct Iterator: AsyncIteratorProtocol {
        let reader: BlobSegmentReader?

        mutating func next() async throws -> [UInt8]? {
            try reader?.next().map { Array($0) }
        }
    }
}

/// The last component of a path.
enum TarName {
    static func last(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? path
    }
}
