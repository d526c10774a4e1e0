import BoundedPool
import Foundation
import NIOCore
import OCI
import Registry

/// What a copy did.
public struct CopyResult: Sendable, Codable {
    public var source: String
    public var destination: String
    public var digest: String
    public var mediaType: String
    public var manifests: Int
    public var blobs: Int
    public var blobsSkipped: Int
    public var bytesTransferred: Int64
    public var bytesSkipped: Int64
    public var seconds: Double
    public var bytesPerSecond: Double
    public var peakResidentBytes: Int64
}

public enum MirrorError: Error, CustomStringConvertible, Sendable {
    case invalidInput(String)
    case failed(String)
    case corruptBlob(String)

    public var description: String {
        switch self {
        case let .invalidInput(message), let .failed(message), let .corruptBlob(message): return message
        }
    }
}

/// Copies an image or index, with every child manifest and blob, from one registry to
/// another. Plan first (all manifests, the set of distinct blobs), then move blobs through
/// one bounded pool, streaming each from source to destination without touching disk, then
/// put manifests children first and the tag last, so the destination never shows a tag
/// pointing at something incomplete. Manifest bytes travel unchanged, so digests are identical.
public struct ImageCopier: Sendable {
    public let source: RegistryClient
    public let destination: RegistryClient
    public let jobs: Int
    public let progress: TransferProgress

    public init(source: RegistryClient, destination: RegistryClient, jobs: Int, progress: TransferProgress) {
        self.source = source
        self.destination = destination
        self.jobs = max(1, jobs)
        self.progress = progress
    }

    /// Where `from` goes: `to` as given, or with the source's tag (or digest) when it names none.
    public static func destinationReference(from: Reference, to: Reference) -> Reference {
        guard to.tag == nil, to.digest == nil else { return to }
        return from.tag != nil ? to.with(tag: from.tag) : to.with(digest: from.digest)
    }

    public func copy(from: Reference, to requested: Reference) async throws -> CopyResult {
        let to = Self.destinationReference(from: from, to: requested)
        // Plan: every manifest, in the order they must be put (children before parents).
        let top = try await source.manifest(repository: from.repository, reference: from.manifestReference)
        if let wanted = to.digest, wanted != top.digest {
            throw MirrorError.invalidInput("destination \(to) names digest \(wanted) but \(from) is \(top.digest); drop the digest from the destination")
        }
        var manifests: [FetchedManifest] = []
        try await collect(top, repository: from.repository, into: &manifests)
        var blobs: [Digest: Descriptor] = [:]
        for manifest in manifests {
            if case let .image(image) = manifest.document {
                for blob in [image.config] + image.layers { blobs[blob.digest] = blob }
            }
        }
        let blobList = blobs.values.sorted { $0.size > $1.size }  // large first keeps the pool busy to the end
        progress.plan(blobs: blobList.count, bytes: blobList.reduce(0) { $0 + $1.size }, images: manifests.count)

        // Act: blobs, then manifests, then the tag.
        let sameRegistry = source.host == destination.host
        try await forEachConcurrently(blobList, limit: jobs) { blob in
            try await copyBlob(blob, from: from.repository, to: to.repository, mount: sameRegistry)
        }
        for manifest in manifests.dropLast() {
            try await destination.putManifest(repository: to.repository, reference: manifest.digest.string,
                                              bytes: manifest.bytes, mediaType: manifest.mediaType)
            progress.imageDone("\(to.host)/\(to.repository)@\(manifest.digest)")
        }
        try await destination.putManifest(repository: to.repository, reference: to.tag ?? top.digest.string,
                                          bytes: top.bytes, mediaType: top.mediaType)
        progress.imageDone(to.description)

        let snapshot = progress.snapshot
        let seconds = progress.elapsed.inSeconds
        return CopyResult(
            source: from.description, destination: to.with(digest: nil).description + "@\(top.digest)",
            digest: top.digest.string, mediaType: top.mediaType.rawValue, manifests: manifests.count,
            blobs: blobList.count, blobsSkipped: snapshot.skippedBlobs,
            bytesTransferred: snapshot.transferredBytes, bytesSkipped: snapshot.skippedBytes,
            seconds: seconds, bytesPerSecond: seconds > 0 ? Double(snapshot.transferredBytes) / seconds : 0,
            peakResidentBytes: peakResidentBytes())
    }

    /// Depth first: children are appended before their index.
    private func collect(_ manifest: FetchedManifest, repository: String, into list: inout [FetchedManifest]) async throws {
        if case let .index(index) = manifest.document {
            for child in index.manifests where !list.contains(where: { $0.digest == child.digest }) {
                let fetched = try await source.manifest(repository: repository, reference: child.digest.string)
                try await collect(fetched, repository: repository, into: &list)
            }
        }
        list.append(manifest)
    }

    private func copyBlob(_ blob: Descriptor, from: String, to: String, mount: Bool) async throws {
        if let size = try await destination.blobSize(repository: to, digest: blob.digest), size == blob.size || size < 0 {
            progress.blobDone(digest: blob.digest.string, bytes: blob.size, transferred: false)
            return
        }
        let progress = self.progress
        let source = self.source
        let counter = StreamedBytes()
        let outcome = try await destination.uploadBlob(repository: to, descriptor: blob, mountFrom: mount ? from : nil) {
            // A restarted attempt streams from the beginning: take back what the last one counted.
            progress.retract(bytes: counter.reset())
            return source.blob(repository: from, descriptor: blob) { n in
                counter.add(n)
                progress.addBytes(n)
            }
        }
        progress.blobDone(digest: blob.digest.string, bytes: blob.size, transferred: outcome == .uploaded)
    }
}

import Synchronization

/// Bytes streamed by the current attempt of one blob transfer.
final class StreamedBytes: Sendable {
    private let value = Mutex<Int64>(0)
    func add(_ n: Int) { value.withLock { $0 += Int64(n) } }
    func reset() -> Int64 { value.withLock { let old = $0; $0 = 0; return old } }
}
