import BoundedPool
import Bundle
import DKP
import Foundation
import NIOCore
import OCI
import Registry
import Streams
import Synchronization

/// Where each entry of a tar comes from.
enum EntrySource: Sendable {
    case bytes([UInt8])
    /// Bytes kept in the plan's spool file (manifests, index.json).
    case spooled(ManifestSpool, ManifestSpool.Extent)
    /// Boxed: a whole `Descriptor` inline made every entry of every tar (20,000 manifests
    /// among them) as large as a blob's.
    indirect case blob(repository: String, descriptor: Descriptor)
}

/// One tar of the bundle, planned down to the byte: its layout (entry names, sizes, offsets)
/// and, for each entry, where its bytes come from.
struct TarPlan: Sendable {
    var name: String
    var layout: TarLayout
    var sources: [EntrySource]
    var images: Int
    /// For each reference in this tar, the blob entries it needs (for images done/total).
    /// (The image's position in the plan's references: its ref name is made only when it is reported.)
    var imageBlobs: [(image: Int, entries: [Int])]
}

/// The whole pull, planned: every tar, every entry.
public struct BundlePlan: Sendable {
    var tars: [TarPlan]
    public var references: [BundleImage]
    /// With `against`: the blobs left out of the tars (see `DifferentialBundle`).
    var leftOut: LeftOutPlan?

    public var imageCount: Int { references.count }
    public var blobCount: Int { tars.reduce(0) { $0 + $1.sources.filter { if case .blob = $0 { return true } else { return false } }.count } }
    public var totalBytes: Int64 { tars.reduce(0) { $0 + $1.layout.totalSize } }
    public var tarNames: [String] { tars.map(\.name) }
}

public struct PullResult: Sendable, Codable {
    public var bundleDirectory: String
    public var files: [String]
    public var images: Int
    public var blobs: Int
    public var bytesTransferred: Int64
    public var bytesAlreadyPresent: Int64
    public var seconds: Double
    public var bytesPerSecond: Double
    public var peakResidentBytes: Int64
    /// From the process's start to the first blob byte: everything before it (connections,
    /// tokens, discovery, planning) is latency a far registry multiplies; nil when nothing was
    /// downloaded.
    public var secondsToFirstBlobByte: Double?
    /// A differential pull: the blobs left out of the tars (listed in left-out-blobs.inventory) and their bytes.
    public var leftOutBlobs = 0
    public var leftOutBytes: Int64 = 0
}

/// Pulls images into d8-format tars (dkp-source-and-bundle.md §2). Plan: fetch every
/// manifest, lay every tar out to the byte. Then one bounded pool downloads blobs straight to
/// their offsets in the tars (written once, no temporary tree); tars appear under their final
/// names only when complete, and a re-run resumes from the journal of finished entries.
public struct BundlePuller: Sendable {
    public let client: RegistryClient
    public let jobs: Int
    public let progress: TransferProgress
    /// When large blobs are fetched in parts and resumed inside.
    public var ranged = RangedDownloadPolicy()

    public init(client: RegistryClient, jobs: Int, progress: TransferProgress) {
        self.client = client
        self.jobs = max(1, jobs)
        self.progress = progress
    }

    // MARK: plan

    /// With `against` (`pull --against`), a blob that inventory lists is left out of the tars
    /// (manifests never are): see `DifferentialBundle`. `pinned` (`REPOSITORY:TAG` -> digest,
    /// discovery's `channelDigests`) names tags fetched by the digest discovery read there.
    public func plan(_ images: [BundleImage], against: AgainstInventories? = nil,
                     pinned: [String: Digest] = [:]) async throws -> BundlePlan {
        var leftOut = against.map { LeftOutPlan(against: $0.description) }
        // Fetch each distinct (repository, reference) once; aliases share their target's fetch.
        let keys = Array(Set(images.map { ManifestKey(repository: $0.repository, reference: $0.reference) })).sorted()
        let spool = try ManifestSpool()
        var (fetched, descriptors) = try await concurrentFetch(keys, spool: spool, pinned: pinned)

        var byTar: [String: [String: LayoutContent]] = [:]
        // Each layout's reference list made at its final size: grown by doubling, the old and
        // the new buffer were both alive at the plan's peak (3 MB at 20,000 references).
        var counts: [String: [String: Int]] = [:]
        for image in images { counts[image.tar, default: [:]][image.layout, default: 0] += 1 }
        for (tar, layouts) in counts {
            for (layout, count) in layouts {
                var content = LayoutContent(path: layout)
                content.references.reserveCapacity(count)
                byTar[tar, default: [:]][layout] = content
            }
        }
        counts = [:]
        for (position, image) in images.enumerated() {
            guard let tree = fetched[ManifestKey(repository: image.repository, reference: image.reference)] else { continue }
            // Mutated in place: a copy taken out and put back copied the layout on every image.
            byTar[image.tar, default: [:]][image.layout, default: LayoutContent(path: image.layout)]
                .add(image, at: position, tree: tree, descriptors: descriptors)
        }
        // From here on each image needs only its blobs' digests (shared with the trees, not
        // copied); the trees and the descriptor table go before the tars are laid out.
        let imageDigests = images.map { fetched[ManifestKey(repository: $0.repository, reference: $0.reference)]?.blobDigests }
        fetched = [:]
        descriptors = [:]
        releaseFreedMemory()
        var tars: [TarPlan] = []
        for name in byTar.keys.sorted() {
            var entries: [(name: String, size: Int64)] = []
            var sources: [EntrySource] = []
            // Each layout's content goes once its entries are listed (its index.json is in the spool).
            var layouts = byTar.removeValue(forKey: name) ?? [:]
            for path in layouts.keys.sorted() {
                guard let content = layouts.removeValue(forKey: path) else { continue }
                let prefix = path.isEmpty ? "" : path + "/"
                for (entryName, sized) in try content.entries(prefix: prefix, spool: spool, images: images) {
                    if leftOut?.leavesOut(sized.source, tar: name, inventory: against?.merged) == true { continue }
                    entries.append((entryName, sized.size))
                    sources.append(sized.source)
                }
            }
            let layout = try TarLayout(entries: entries, contentTag: try Self.contentTag(sources) + (leftOut?.fingerprintTag(tar: name) ?? ""))
            var imageBlobs: [(Int, [Int])] = []
            for (position, image) in images.enumerated() where image.tar == name {
                guard let digests = imageDigests[position] else { continue }
                let prefix = image.layout.isEmpty ? "" : image.layout + "/"
                let needed = digests.compactMap { layout.index(of: LayoutWriter.blobEntry(prefix: prefix, digest: $0)) }
                imageBlobs.append((position, needed))
            }
            tars.append(TarPlan(name: name, layout: layout, sources: sources,
                                images: images.reduce(0) { $0 + ($1.tar == name ? 1 : 0) }, imageBlobs: imageBlobs))
        }
        releaseFreedMemory()
        return BundlePlan(tars: tars, references: images, leftOut: leftOut)
    }

    /// Names and sizes cover the blobs; the small entries' bytes (index.json) need their own
    /// digest.
    private static func contentTag(_ sources: [EntrySource]) throws -> String {
        let hasher = SHA256()
        var scratch: [UInt8] = []
        for source in sources {
            switch source {
            case let .bytes(bytes): hasher.update(bytes)
            case let .spooled(spool, extent):
                try spool.read(extent, pieceSize: 1 << 20, into: &scratch) { hasher.update($0) }
            case .blob: break
            }
        }
        return hasher.finalize().hex
    }

    /// Every tree, and one descriptor for each blob the trees use: thousands of images share
    /// one config and base layer, and each parsed copy of their descriptors had its own strings.
    private func concurrentFetch(_ keys: [ManifestKey], spool: ManifestSpool,
                                 pinned: [String: Digest]) async throws -> ([ManifestKey: ManifestTree], [Digest: Descriptor]) {
        var result: [ManifestKey: ManifestTree] = [:]
        result.reserveCapacity(keys.count)
        var descriptors: [Digest: Descriptor] = [:]
        var mediaTypes: Set<MediaType> = []
        // Images built on the same config and layers have equal lists: one buffer for all of them.
        var blobLists: Set<[Digest]> = []
        try await forEachConcurrently(keys, limit: jobs, { key in try await self.fetchTree(key, spool: spool, pinned: pinned) }) { key, fetched, blobs in
            for blob in blobs where descriptors[blob.digest] == nil { descriptors[blob.digest] = blob }
            // The tree keeps the table's copies of its strings, not its own.
            var tree = fetched
            tree.blobDigests = blobLists.insert(tree.blobDigests).memberAfterInsert
            tree.top.mediaType = mediaTypes.insert(tree.top.mediaType).memberAfterInsert
            result[key] = tree
        }
        return (result, descriptors)
    }

    /// A manifest with, for an index, every child manifest (recursively).
    private func fetchTree(_ key: ManifestKey, spool: ManifestSpool,
                           pinned: [String: Digest]) async throws -> (ManifestKey, ManifestTree, [Descriptor]) {
        let reference = pinned[DiscoveredEdition.channelKey(repository: key.repository, tag: key.reference)]?.string ?? key.reference
        let top = try await client.manifest(repository: key.repository, reference: reference)
        var all = [top]
        var queue = [top]
        while let manifest = queue.popLast() {
            guard case let .index(index) = manifest.document else { continue }
            for child in index.manifests where !all.contains(where: { $0.digest == child.digest }) {
                let fetched = try await client.manifest(repository: key.repository, reference: child.digest.string)
                all.append(fetched)
                queue.append(fetched)
            }
        }
        let blobs = all.flatMap { manifest -> [Descriptor] in
            guard case let .image(image) = manifest.document else { return [] }
            return [image.config] + image.layers
        }
        let topBytes = try spool.append(top.bytes)
        let children = try all.dropFirst().map { ($0.digest, try spool.append($0.bytes)) }
        return (key, ManifestTree(repository: key.repository, top: top, topBytes: topBytes, children: children, blobs: blobs), blobs)
    }
}
