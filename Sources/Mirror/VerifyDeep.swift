import Bundle
import Dispatch
import Foundation
import OCI
import Streams
import Synchronization

/// What `verify --deep` did, for the report.
public struct DeepSummary: Sendable, Codable {
    /// Layers whose diff_id was checked (decompressed, or plain tars compared by digest).
    public var layers: Int
    /// Of those, the plain tars: their digest is their diff_id, so nothing was decompressed.
    public var plainLayers: Int
    /// Layers not checked: media types that are not image layers (trivy databases, other
    /// artifacts), or images whose config is not an image config.
    public var skipped: Int
    /// Bytes decompressed from, and to.
    public var compressedBytes: Int64
    public var uncompressedBytes: Int64
    public var seconds: Double
}

struct DeepReport {
    var layers = 0
    var plainLayers = 0
    var skipped = 0
    var compressedBytes: Int64 = 0
    var uncompressedBytes: Int64 = 0
    var seconds = 0.0
    var problems: [VerifyProblem] = []
}

/// One layer blob to decompress, and what each image using it expects.
private struct LayerWork: Sendable {
    let layout: BundleIndex.Layout
    let location: BlobLocation
    let compression: LayerCompression
    /// The first image that uses the layer, to name it.
    let image: String
    var expectations: [(image: String, expected: Digest)]
}

private struct ImageConfigDocument: Decodable {
    struct RootFS: Decodable {
        var type: String?
        var diff_ids: [String]?
    }
    var rootfs: RootFS?
}

/// The walk of `verify --deep` over every image of the bundle: the layers to decompress and
/// what each image's config expects of them, with the problems found on the way.
private struct DeepWalk {
    let bundle: BundleIndex
    /// Blobs reported already (`<layout path>@<hex>`), skipped.
    let damaged: Set<String>
    var report = DeepReport()
    var work = [String: LayerWork]()
    var order = [String]()
    var visited = Set<String>()
    /// Plain-tar layers counted already (`<layout path>@<hex>`): shared ones are counted once.
    var plainCounted = Set<String>()
    var configsReported = Set<String>()
    var mismatches = Set<String>()

    mutating func visit(_ descriptor: Descriptor, layout: BundleIndex.Layout, image: String) {
        let key = layout.path + "@" + descriptor.digest.hex
        guard visited.insert(key).inserted, !damaged.contains(key),
              let location = bundle.blob(descriptor.digest, in: layout),
              let bytes = try? bundle.readSmall(location),
              let document = try? ManifestDocument.parse(bytes, contentType: descriptor.mediaType)
        else { return }  // missing, corrupt or invalid manifests are reported by the offline checks
        switch document {
        case let .index(index):
            for child in index.manifests {
                let platform = child.platform.map { " \($0.os)/\($0.architecture)" } ?? ""
                visit(child, layout: layout, image: "\(image) (\(child.digest)\(platform))")
            }
        case let .image(manifest):
            visitImage(manifest, layout: layout, image: image)
        }
    }

    private mutating func visitImage(_ manifest: ImageManifest, layout: BundleIndex.Layout, image: String) {
        let configType = manifest.config.mediaType
        guard configType == .ociConfig || configType == .dockerConfig else {
            report.skipped += manifest.layers.count
            return
        }
        let configKey = layout.path + "@" + manifest.config.digest.hex
        guard !damaged.contains(configKey), let configLocation = bundle.blob(manifest.config.digest, in: layout),
              let configBytes = try? bundle.readSmall(configLocation)
        else { return }
        let config: ImageConfigDocument
        do {
            config = try JSONDecoder().decode(ImageConfigDocument.self, from: Data(configBytes))
        } catch {
            report.problems.append(VerifyProblem(check: "diff_id",
                message: "\(layout.tar): \(image): config \(manifest.config.digest) is not a valid image config, so its layers cannot be checked"))
            return
        }
        let diffIDs = config.rootfs?.diff_ids ?? []
        if diffIDs.count != manifest.layers.count, configsReported.insert(configKey).inserted {
            report.problems.append(VerifyProblem(check: "diff_id",
                message: "\(layout.tar): \(image): config \(manifest.config.digest) lists \(diffIDs.count) rootfs.diff_ids "
                    + "for \(manifest.layers.count) layers; an image config lists one per layer"))
        }
        for (i, layer) in manifest.layers.enumerated() {
            addLayer(layer, number: i, of: manifest.config.digest, diffIDs: diffIDs, layout: layout, image: image)
        }
    }

    /// Layer `number` of an image whose config lists `diffIDs`.
    private mutating func addLayer(_ layer: Descriptor, number i: Int, of config: Digest, diffIDs: [String],
                                   layout: BundleIndex.Layout, image: String) {
        let compression = layer.mediaType.layerCompression
        guard compression != .unknown else {
            report.skipped += 1
            return
        }
        let layerKey = layout.path + "@" + layer.digest.hex
        guard !damaged.contains(layerKey), let location = bundle.blob(layer.digest, in: layout) else { return }
        var expected: Digest?
        if i < diffIDs.count {
            expected = try? Digest(parsing: diffIDs[i])
            if expected == nil, configsReported.insert(layout.path + "@" + config.hex + "#\(i)").inserted {
                report.problems.append(VerifyProblem(check: "diff_id",
                    message: "\(layout.tar): \(image): config \(config) has diff_id '\(diffIDs[i].prefix(80))' for layer \(layer.digest), which is not a digest"))
            }
        }
        if compression == .none {
            // A plain tar is its own diff: the digest already checked is the diff_id.
            if plainCounted.insert(layerKey).inserted { report.plainLayers += 1 }
            if let expected, expected != layer.digest {
                report.problems.append(BundleVerifier.mismatch(layout: layout, image: image, layer: layer.digest, expected: expected, actual: layer.digest))
            }
            return
        }
        if work[layerKey] == nil {
            work[layerKey] = LayerWork(layout: layout, location: location, compression: compression, image: image, expectations: [])
            order.append(layerKey)
        }
        // Without a diff_id to compare with, the layer is still decompressed: a damaged stream is found.
        if let expected, mismatches.insert(layerKey + "=" + expected.hex).inserted {
            work[layerKey]?.expectations.append((image, expected))
        }
    }
}

extension BundleVerifier {
    /// `verify --deep`: every gzip or zstd image layer decompressed and its SHA-256 compared
    /// with the matching entry of its image config's `rootfs.diff_ids` (a plain tar's digest
    /// is compared as it is).
    /// Blobs in `damaged` (by `<layout path>@<hex>`) were reported already and are skipped;
    /// layers of other media types and artifacts with non-image configs are skipped.
    func checkDiffIDs(skipping damaged: Set<String>) -> DeepReport {
        let started = ContinuousClock.now
        var walk = DeepWalk(bundle: bundle, damaged: damaged)
        for layout in bundle.layouts {
            for descriptor in layout.descriptors {
                walk.visit(descriptor, layout: layout, image: Self.reference(descriptor, in: layout))
            }
        }
        var report = walk.report
        // Decompress in parallel, largest first; each layer streams through one buffer.
        let items = walk.order.compactMap { walk.work[$0] }.sorted { $0.location.size > $1.location.size }
        for entry in Self.decompress(items) {
            report.problems += entry.problems
            report.compressedBytes += entry.compressed
            report.uncompressedBytes += entry.uncompressed
        }
        report.layers = items.count + report.plainLayers
        report.problems.sort { $0.message < $1.message }
        report.seconds = (ContinuousClock.now - started).inSeconds
        return report
    }

    /// Each layer decompressed on all cores, its diff_id compared with what its images expect;
    /// results in the items' order.
    private static func decompress(_ items: [LayerWork]) -> [(problems: [VerifyProblem], compressed: Int64, uncompressed: Int64)] {
        let found = Mutex<[(index: Int, problems: [VerifyProblem], compressed: Int64, uncompressed: Int64)]>([])
        DispatchQueue.concurrentPerform(iterations: items.count) { i in
            let item = items[i]
            var problems: [VerifyProblem] = []
            var uncompressed: Int64 = 0
            do {
                let result = try LayerDecompressor.diffID(of: item.location, compression: item.compression)
                uncompressed = result.size
                for (image, expected) in item.expectations where expected != result.diffID {
                    problems.append(mismatch(layout: item.layout, image: image, layer: item.location.digest, expected: expected, actual: result.diffID))
                }
            } catch {
                problems.append(VerifyProblem(check: "diff_id",
                    message: "\(item.layout.tar): \(item.expectations.first?.image ?? item.image): layer \(item.location.digest) (\(item.compression.rawValue)) "
                        + "in \(Self.name(item.layout)) cannot be decompressed: \(error)"))
            }
            let entry = (i, problems, item.location.size, uncompressed)
            found.withLock { $0.append(entry) }
        }
        return found.withLock { $0 }.sorted(by: { $0.index < $1.index }).map { ($0.problems, $0.compressed, $0.uncompressed) }
    }

    static func mismatch(layout: BundleIndex.Layout, image: String, layer: Digest, expected: Digest, actual: Digest) -> VerifyProblem {
        VerifyProblem(check: "diff_id",
            message: "\(layout.tar): \(image): layer \(layer) decompresses to diff_id \(actual), but the image config lists \(expected)")
    }

    /// How a report names an image: its source reference, else `<path>:<tag>`.
    static func reference(_ descriptor: Descriptor, in layout: BundleIndex.Layout) -> String {
        if let name = descriptor.annotations?["org.opencontainers.image.ref.name"], !name.isEmpty { return name }
        let tag = descriptor.annotations?["io.deckhouse.image.short_tag"] ?? descriptor.digest.hex
        return "\(layout.path.isEmpty ? "." : layout.path):\(tag)"
    }
}
