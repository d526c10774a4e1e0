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
    /// (manifests never are): see `DifferentialBundle`.
    public func plan(_ images: [BundleImage], against: AgainstInventories? = nil) async throws -> BundlePlan {
        var leftOut = against.map { LeftOutPlan(against: $0.description) }
        // Fetch each distinct (repository, reference) once; aliases share their target's fetch.
        let keys = Array(Set(images.map { ManifestKey(repository: $0.repository, reference: $0.reference) })).sorted()
        let spool = try ManifestSpool()
        var (fetched, descriptors) = try await concurrentFetch(keys, spool: spool)

        var byTar: [String: [String: LayoutContent]] = [:]
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
                let needed = digests.compactMap { layout.index(of: "\(prefix)blobs/sha256/\($0.hex)") }
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
    private func concurrentFetch(_ keys: [ManifestKey], spool: ManifestSpool) async throws -> ([ManifestKey: ManifestTree], [Digest: Descriptor]) {
        try await withThrowingTaskGroup(of: (ManifestKey, ManifestTree, [Descriptor]).self) { group in
            var result: [ManifestKey: ManifestTree] = [:]
            result.reserveCapacity(keys.count)
            var descriptors: [Digest: Descriptor] = [:]
            var iterator = keys.makeIterator()
            func add() {
                guard let key = iterator.next() else { return }
                group.addTask { try await self.fetchTree(key, spool: spool) }
            }
            for _ in 0..<jobs { add() }
            var mediaTypes: Set<MediaType> = []
            while let (key, fetched, blobs) = try await group.next() {
                for blob in blobs where descriptors[blob.digest] == nil { descriptors[blob.digest] = blob }
                // The tree keeps the table's copies of its strings, not its own.
                var tree = fetched
                tree.blobDigests = tree.blobDigests.map { descriptors[$0]?.digest ?? $0 }
                tree.top.mediaType = mediaTypes.insert(tree.top.mediaType).memberAfterInsert
                result[key] = tree
                add()
            }
            return (result, descriptors)
        }
    }

    /// A manifest with, for an index, every child manifest (recursively).
    private func fetchTree(_ key: ManifestKey, spool: ManifestSpool) async throws -> (ManifestKey, ManifestTree, [Descriptor]) {
        let top = try await client.manifest(repository: key.repository, reference: key.reference)
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
        let manifests = try all.map { ($0.digest, try spool.append($0.bytes)) }
        return (key, ManifestTree(repository: key.repository, top: top, manifests: manifests, blobs: blobs), blobs)
    }

    // MARK: pull

    /// `resume: false` (`--no-pull-resume`) discards what earlier runs wrote: the journals, the
    /// partial files and the record of finished tars, so every byte is fetched again.
    ///
    /// A directory holding files of another pull (tars this plan does not write, or tars of
    /// its names finished by another plan) is refused, unless `replacing` (`--force`): then
    /// those files are removed once the new bundle is complete, never before.
    public func pull(_ plan: BundlePlan, into directory: String, chunkSize: Int64?, resume: Bool = true,
                     replacing: Bool = false) async throws -> PullResult {
        // Opening a writer rewrites the journal for this plan: never do that for a plan made
        // while the run was being cancelled (an interrupted discovery may come back short).
        try Task.checkCancellation()
        let state = StateDirectory(bundle: directory)
        let otherPull = state.filesOfAnotherPull(plan, chunkSize: chunkSize)
        if !otherPull.isEmpty && !replacing {
            throw MirrorError.invalidInput("\(directory) holds a bundle of another pull (\(otherPull.prefix(4).joined(separator: ", "))"
                + "\(otherPull.count > 4 ? ", ..." : "")): mixing the two would leave its images beside this pull's; "
                + "pull into an empty directory, or pass --force to replace that bundle (its files are removed once the new one is complete)")
        }
        if !resume { try state.discardProgress(tars: plan.tarNames) }
        try state.create()
        var files: [String] = []
        var alreadyPresent: Int64 = 0
        var pending: [(TarPlan, TarFileWriter)] = []
        for tar in plan.tars {
            let finalPath = directory + "/" + tar.name
            if let done = state.completed(tar: tar.name, fingerprint: tar.layout.fingerprint, chunkSize: chunkSize) {
                files += done
                alreadyPresent += tar.layout.totalSize
                progress.note("\(tar.name): complete from an earlier run")
                continue
            }
            let writer = try TarFileWriter(finalPath: finalPath, layout: tar.layout, chunkSize: chunkSize)
            pending.append((tar, writer))
        }
        // Progress counts the whole plan; what is already on disk counts as skipped.
        var jobs: [BlobJob] = []
        var blobs = 0
        for (tar, writer) in pending {
            try Self.writeSmallEntries(tar, to: writer)
            for (index, source) in tar.sources.enumerated() {
                switch source {
                case .bytes, .spooled: break
                case let .blob(repository, descriptor):
                    blobs += 1
                    if writer.isComplete(index) {
                        alreadyPresent += descriptor.size
                    } else {
                        jobs.append(BlobJob(writer: writer, entry: index, repository: repository, descriptor: descriptor))
                    }
                }
            }
        }
        try Self.checkFreeSpace(directory: directory, needed: Self.bytesStillToWrite(pending))
        releaseFreedMemory()
        let tracker = ImageTracker(pending: pending.map { ($0.0, $0.1) })
        // Large blobs go in parts (each its own unit of the one pool), the rest whole; the
        // biggest first, so the long transfers start early.
        jobs.sort { $0.descriptor.size > $1.descriptor.size }
        var units: [TransferUnit] = []
        var resumedBytes: Int64 = 0
        for job in jobs {
            guard RangedBlob.applies(to: job, policy: ranged) else { units.append(.whole(job)); continue }
            let blob = RangedBlob(job: job, policy: ranged)
            resumedBytes += blob.alreadyOnDisk
            units += blob.parts.isEmpty ? [.part(blob, nil)] : blob.parts.indices.map { .part(blob, $0) }
        }
        alreadyPresent += resumedBytes
        progress.plan(blobs: jobs.count, bytes: jobs.reduce(0) { $0 + $1.descriptor.size } - resumedBytes, images: tracker.total)
        for image in tracker.alreadyComplete { progress.imageDone(plan.references[image].refName) }
        try await forEachConcurrently(units, limit: self.jobs) { unit in
            let finished: BlobJob?
            switch unit {
            case let .whole(job):
                try await job.fetchWhole(client: self.client, progress: self.progress)
                finished = job
            case let .part(blob, part):
                finished = try await blob.run(part: part, client: self.client, progress: self.progress) ? blob.job : nil
            }
            if let job = finished {
                for image in tracker.finished(tar: job.writer.finalPath, entry: job.entry) { self.progress.imageDone(plan.references[image].refName) }
            }
        }
        for (tar, writer) in pending {
            let written = try writer.commit()
            try state.markCompleted(tar: tar.name, fingerprint: tar.layout.fingerprint, chunkSize: chunkSize, files: written)
            files += written
            progress.note("\(tar.name): written")
        }
        files += try Self.writeLeftOut(plan, into: directory)
        try Checksums.writeSHA256SUMS(directory: directory, files: files.map { ($0 as NSString).lastPathComponent })
        if !otherPull.isEmpty {
            // The new bundle is complete and durable: only now does the old one go.
            for name in state.removeOtherPull(keeping: files.map { ($0 as NSString).lastPathComponent }, plan: plan) {
                progress.note("\(name): removed (of the bundle this pull replaces)")
            }
        }
        let snapshot = progress.snapshot
        let seconds = progress.elapsed.inSeconds
        var result = PullResult(bundleDirectory: directory, files: files.map { ($0 as NSString).lastPathComponent },
                          images: plan.imageCount, blobs: blobs,
                          bytesTransferred: snapshot.transferredBytes, bytesAlreadyPresent: alreadyPresent,
                          seconds: seconds, bytesPerSecond: seconds > 0 ? Double(snapshot.transferredBytes) / seconds : 0,
                          peakResidentBytes: peakResidentBytes(),
                          secondsToFirstBlobByte: progress.firstByteAt.map { ($0 - ProcessClock.started).inSeconds })
        (result.leftOutBlobs, result.leftOutBytes) = (plan.leftOutBlobCount, plan.leftOutBytes)
        return result
    }

    /// The manifests, index.json and oci-layout of a tar, from the plan into it through one
    /// reused buffer, synced and journaled once.
    private static func writeSmallEntries(_ tar: TarPlan, to writer: TarFileWriter) throws {
        let small = tar.sources.indices.filter { index in
            if case .blob = tar.sources[index] { return false }
            return !writer.isComplete(index)
        }
        var scratch: [UInt8] = []
        try writer.writeEntries(small) { index, write in
            switch tar.sources[index] {
            case let .bytes(bytes): try write(bytes)
            case let .spooled(spool, extent): try spool.read(extent, pieceSize: 1 << 20, into: &scratch, write)
            case .blob: break // filtered out above
            }
        }
    }

    /// What the unfinished tars still have to write: every entry not yet complete (header, data,
    /// padding) and the end-of-archive blocks. Partial files are sparse, so this is what they
    /// will still take from the file system.
    static func bytesStillToWrite(_ pending: [(TarPlan, TarFileWriter)]) -> Int64 {
        pending.reduce(0) { total, item in
            let (tar, writer) = item
            let entries = tar.layout.entries.indices.filter { !writer.isComplete($0) }.reduce(Int64(0)) { total, index in
                let entry = tar.layout.entries[index]
                let onDisk = writer.syncedRanges(index).reduce(Int64(0)) { $0 + Int64($1.count) }
                return total + entry.endOffset - entry.headerOffset - onDisk
            }
            return total + entries + 2 * Int64(TarHeader.blockSize)
        }
    }

    /// Refuses, before any blob moves, a pull that cannot fit on the bundle's file system.
    static func checkFreeSpace(directory: String, needed: Int64) throws {
        var stats = statvfs()
        guard statvfs(directory, &stats) == 0 else { return }
        let available = Int64(stats.f_bavail) * Int64(stats.f_frsize)
        guard needed > available else { return }
        throw MirrorError.failed("not enough free space in \(directory): the pull still has to write \(formatBytes(needed)) (\(needed) bytes) and its file system has \(formatBytes(available)) (\(available) bytes) free; free some space or pull into a directory on a larger file system (nothing was downloaded)")
    }

}

/// One unit of the pull's pool: a blob fetched whole, or one part of a large one.
enum TransferUnit: Sendable {
    case whole(BlobJob)
    case part(RangedBlob, Int?)
}

struct BlobJob: Sendable {
    let writer: TarFileWriter
    let entry: Int
    let repository: String
    let descriptor: Descriptor

    /// The whole blob in one verified stream, written from its entry's first byte and finished.
    func fetchWhole(client: RegistryClient, progress: TransferProgress) async throws {
        let stream = writer.entryStream(entry)
        var received: Int64 = 0
        do {
            for try await buffer in client.blob(repository: repository, descriptor: descriptor, onBytes: { progress.addBytes($0) }) {
                try buffer.withUnsafeReadableBytes { try stream.append($0) }
                received += Int64(buffer.readableBytes)
            }
            try stream.finish()
        } catch {
            stream.reset()
            progress.retract(bytes: received)
            throw error
        }
        progress.blobDone(digest: descriptor.digest.string, bytes: descriptor.size, transferred: true)
    }
}

struct ManifestKey: Hashable, Comparable, Sendable {
    var repository: String
    var reference: String
    static func < (a: ManifestKey, b: ManifestKey) -> Bool { (a.repository, a.reference) < (b.repository, b.reference) }
}

/// A fetched manifest and, for an index, all its children, reduced to what the plan keeps:
/// each manifest's digest and bytes, and the blobs its images use. The parsed documents are
/// dropped as soon as a tree is fetched: with 10,000 digest images they were most of the
/// plan's memory.
struct ManifestTree: Sendable {
    var repository: String
    var top: ManifestRef
    var manifests: [(digest: Digest, bytes: ManifestSpool.Extent)]
    /// Configs and layers of every image in the tree, in manifest order (their descriptors
    /// are kept once for all trees, by the plan).
    var blobDigests: [Digest]

    init(repository: String, top: FetchedManifest, manifests: [(digest: Digest, bytes: ManifestSpool.Extent)], blobs: [Descriptor]) {
        self.repository = repository
        self.top = ManifestRef(mediaType: top.mediaType, digest: top.digest, size: Int64(top.bytes.count))
        self.manifests = manifests
        blobDigests = blobs.map(\.digest)
    }
}

/// What index.json says of a manifest (a whole `Descriptor` is four times its size).
struct ManifestRef: Sendable {
    var mediaType: MediaType
    var digest: Digest
    var size: Int64
}

/// Counts references whose every blob is written, for "images done/total".
final class ImageTracker: Sendable {
    // Images are counted by their position in the plan's references, not their ref name: two
    // images may share one (a channel alias and its version in one repository), and each must
    // be counted once. Positions, not names, so 20,000 references cost no string each.
    private struct Key: Hashable {
        var tar: String    // the writer's path, shared, not a new string per key
        var entry: Int
    }
    private struct State {
        var remaining: [Int: Int] = [:]             // image -> blobs still missing
        var waiting: [Key: [Int]] = [:]             // tar entry -> images needing it
    }
    private let state: Mutex<State>
    let total: Int
    /// Positions of the images whose blobs were all on disk already.
    let alreadyComplete: [Int]

    init(pending: [(TarPlan, TarFileWriter)]) {
        var state = State()
        var total = 0
        var complete: [Int] = []
        for (tar, writer) in pending {
            for (image, entries) in tar.imageBlobs {
                total += 1
                let missing = Set(entries.filter { !writer.isComplete($0) })
                if missing.isEmpty { complete.append(image); continue }
                state.remaining[image] = missing.count
                for entry in missing { state.waiting[Key(tar: writer.finalPath, entry: entry), default: []].append(image) }
            }
        }
        self.state = Mutex(state)
        self.total = total
        self.alreadyComplete = complete
    }

    /// Positions of the images completed by this entry.
    func finished(tar: String, entry: Int) -> [Int] {
        state.withLock { state in
            var done: [Int] = []
            for image in state.waiting.removeValue(forKey: Key(tar: tar, entry: entry)) ?? [] {
                state.remaining[image, default: 1] -= 1
                if state.remaining[image] == 0 { done.append(image) }
            }
            return done
        }
    }
}

/// The content of one OCI layout: its index.json descriptors and every blob it holds.
struct LayoutContent {
    var path: String
    /// The images' positions in the plan's references: ref names and short tags are made only
    /// when index.json is written (a string each for 20,000 references, held all plan long).
    var references: [(image: Int, descriptor: ManifestRef)] = []
    var manifestBytes: [Digest: ManifestSpool.Extent] = [:]
    var blobs: [Digest: (repository: String, descriptor: Descriptor)] = [:]

    /// The references already in `references` (a linear search made planning quadratic).
    var refKeys: Set<BundleImage.LayoutKey> = []

    mutating func add(_ image: BundleImage, at position: Int, tree: ManifestTree, descriptors: [Digest: Descriptor]) {
        if refKeys.insert(image.layoutKey).inserted {
            references.append((position, tree.top))
        }
        for manifest in tree.manifests { manifestBytes[manifest.digest] = manifest.bytes }
        for digest in tree.blobDigests where manifestBytes[digest] == nil {
            if let blob = descriptors[digest] { blobs[digest] = (tree.repository, blob) }
        }
    }

    /// Entries in a stable order: blobs by digest, then oci-layout and index.json.
    func entries(prefix: String, spool: ManifestSpool, images: [BundleImage]) throws -> [(String, EntrySourceSized)] {
        var all: [(String, EntrySourceSized)] = []
        for digest in Set(manifestBytes.keys).union(blobs.keys).sorted() {
            let name = "\(prefix)blobs/sha256/\(digest.hex)"
            if let bytes = manifestBytes[digest] {
                all.append((name, EntrySourceSized(.spooled(spool, bytes))))
            } else if let blob = blobs[digest] {
                all.append((name, EntrySourceSized(.blob(repository: blob.repository, descriptor: blob.descriptor))))
            }
        }
        all.append(("\(prefix)oci-layout", EntrySourceSized(.bytes(Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8)))))
        all.append(("\(prefix)index.json", EntrySourceSized(.spooled(spool, try spool.appendInPieces { try writeIndexJSON(images: images, to: $0) }))))
        return all
    }

    /// index.json as newer d8 writes it: one descriptor per reference, sorted by ref name,
    /// with the source reference and the tag to push as annotations. Handed to `emit` in pieces
    /// of about 64 KiB: with 20,000 references it is 8 MB, and building a string per descriptor
    /// and joining them held it three times over.
    func writeIndexJSON(images: [BundleImage], to emit: ([UInt8]) throws -> Void) throws {
        var out: [UInt8] = []
        out.reserveCapacity(80 * 1024)
        out += Array("{\"schemaVersion\":2,\"mediaType\":\"\(MediaType.ociLayout.rawValue)\",\"manifests\":[".utf8)
        // Positions sorted, not a sorted copy of the references.
        let refNames = references.map { images[$0.image].refName }
        for (position, index) in references.indices.sorted(by: { refNames[$0] < refNames[$1] }).enumerated() {
            let ref = references[index]
            if out.count >= 64 * 1024 {
                try emit(out)
                out.removeAll(keepingCapacity: true)
            }
            if position > 0 { out.append(UInt8(ascii: ",")) }
            out += "{\"mediaType\":".utf8
            appendJSON(ref.descriptor.mediaType.rawValue, to: &out)
            out += ",\"digest\":".utf8
            appendJSON(ref.descriptor.digest.string, to: &out)
            out += ",\"size\":\(ref.descriptor.size),\"annotations\":{\"io.deckhouse.image.short_tag\":".utf8
            appendJSON(images[ref.image].shortTag, to: &out)
            out += ",\"org.opencontainers.image.ref.name\":".utf8
            appendJSON(refNames[index], to: &out)
            out += "}}".utf8
        }
        out += "]}".utf8
        try emit(out)
    }

    /// `string` as a JSON string literal, escaped as Go's encoder escapes it for these names
    /// (`"`, `\\` and control characters; `/` as is, as d8 writes it).
    private func appendJSON(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += "\\\"".utf8
            case UInt8(ascii: "\\"): out += "\\\\".utf8
            case 0x0A: out += "\\n".utf8
            case 0x0D: out += "\\r".utf8
            case 0x09: out += "\\t".utf8
            case 0x08: out += "\\b".utf8
            case 0x0C: out += "\\f".utf8
            case ..<0x20: out += Array(String(format: "\\u%04x", byte).utf8)
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// An entry source with its size (the tar layout needs every size before any byte moves).
struct EntrySourceSized: Sendable {
    var source: EntrySource
    init(_ source: EntrySource) { self.source = source }
    var size: Int64 {
        switch source {
        case let .bytes(bytes): return Int64(bytes.count)
        case let .spooled(_, extent): return Int64(extent.length)
        case let .blob(_, descriptor): return descriptor.size
        }
    }
}
