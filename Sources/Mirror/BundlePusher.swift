import Bundle
import DKP
import Foundation
import NIOCore
import OCI
import Registry
import Streams
import Synchronization
import Version

public struct PushResult: Sendable, Codable {
    public var target: String
    public var repositories: Int
    public var references: Int
    public var blobs: Int
    public var blobsUploaded: Int
    public var blobsMounted: Int
    public var blobsPresent: Int
    public var bytesUploaded: Int64
    public var seconds: Double
    public var bytesPerSecond: Double
    public var peakResidentBytes: Int64
    /// Images not pushed, each with why (a corrupt or missing blob in the bundle).
    public var failures: [String]
}

/// One manifest to put: into which repository, under which reference (a digest for
/// children, the short tag for what index.json lists).
struct ManifestPut: Sendable {
    var repository: String
    var reference: String
    var digest: Digest
    var bytes: [UInt8]
    var mediaType: MediaType
    /// Blobs (configs, layers) and child manifests that must be there first.
    var blobs: [Digest]
    var children: [Digest]
    var what: String
}

/// One distinct blob and every repository of the target that needs it.
struct BlobPush: Sendable {
    var digest: Digest
    var descriptor: Descriptor
    var location: BlobLocation
    var repositories: [String]
    var what: String
}

/// The push, planned from the bundle's index.json files alone.
public struct PushPlan: Sendable {
    var blobs: [BlobPush]
    /// In order: children by digest, then tags, channel tags last, release channels very last.
    var manifests: [ManifestPut]
    /// Images that cannot be pushed (a missing or corrupt manifest in the bundle).
    public var problems: [String]

    public var blobCount: Int { blobs.count }
    public var blobBytes: Int64 { blobs.reduce(0) { $0 + $1.descriptor.size } }
    public var referenceCount: Int { manifests.filter { !$0.reference.hasPrefix("sha256:") }.count }
    public var repositories: [String] { Array(Set(manifests.map(\.repository))).sorted() }
}

/// Pushes a bundle into a registry straight from its tars (dkp-source-and-bundle.md §3):
/// each layout at path P goes to TARGET/P (`modules` replaced by the modules path suffix),
/// each index.json descriptor tagged with its short tag. Blobs first, through one bounded
/// pool, each read out of the tar and hashed on the way; a blob goes up once and is mounted
/// into every other repository that needs it; then manifests, children before parents,
/// tags after the images they name, release channels last.
public struct BundlePusher: Sendable {
    public let client: RegistryClient
    public let bundle: BundleIndex
    public let target: Reference
    public let modulesPathSuffix: String
    public let jobs: Int
    public let progress: TransferProgress

    public init(client: RegistryClient, bundle: BundleIndex, target: Reference, modulesPathSuffix: String,
                jobs: Int, progress: TransferProgress) {
        self.client = client
        self.bundle = bundle
        self.target = target
        self.modulesPathSuffix = modulesPathSuffix
        self.jobs = max(1, jobs)
        self.progress = progress
    }

    /// TARGET/P, with the leading `modules` of P replaced by the modules path suffix.
    public func repository(for layoutPath: String) -> String {
        let parts = layoutPath.split(separator: "/").map(String.init)
        if parts.first == "modules" {
            let suffix = modulesPathSuffix.split(separator: "/").joined(separator: "/")
            return ([target.repository] + (suffix.isEmpty ? [] : [suffix]) + parts.dropFirst()).joined(separator: "/")
        }
        return ([target.repository] + parts).joined(separator: "/")
    }

    // MARK: plan

    public func plan() throws -> PushPlan {
        var blobs: [Digest: BlobPush] = [:]
        var children: [ManifestPut] = []
        var tags: [(order: Int, put: ManifestPut)] = []
        var problems: [String] = []
        var seenChildren = Set<String>()

        for layout in bundle.layouts {
            let repository = repository(for: layout.path)
            for descriptor in layout.descriptors {
                let tag = Self.shortTag(descriptor)
                let what = "\(layout.tar):\(layout.path.isEmpty ? "/" : layout.path) \(tag)"
                do {
                    let tree = try manifestTree(descriptor.digest, mediaType: descriptor.mediaType, layout: layout, what: what)
                    for node in tree.dropLast() where seenChildren.insert("\(repository)@\(node.digest)").inserted {
                        children.append(ManifestPut(repository: repository, reference: node.digest.string, digest: node.digest,
                                                    bytes: node.bytes, mediaType: node.mediaType, blobs: node.blobs.map(\.digest),
                                                    children: node.children, what: what))
                    }
                    for node in tree {
                        for blob in node.blobs {
                            guard let location = bundle.blob(blob.digest, in: layout) else {
                                throw MirrorError.corruptBlob("\(what): blob \(blob.digest) is missing from the bundle")
                            }
                            var push = blobs[blob.digest] ?? BlobPush(digest: blob.digest, descriptor: blob, location: location,
                                                                      repositories: [], what: what)
                            if !push.repositories.contains(repository) { push.repositories.append(repository) }
                            blobs[blob.digest] = push
                        }
                    }
                    let top = tree[tree.count - 1]
                    tags.append((Self.order(layout: layout.path, tag: tag),
                                 ManifestPut(repository: repository, reference: tag, digest: top.digest, bytes: top.bytes,
                                             mediaType: top.mediaType, blobs: top.blobs.map(\.digest), children: top.children, what: what)))
                } catch {
                    problems.append("\(error)")
                }
            }
            // Module discovery: TARGET/modules:<name> names the module (its newest version's image).
            let parts = layout.path.split(separator: "/")
            if parts.count == 2, parts[0] == "modules",
               let newest = layout.descriptors.compactMap({ d in Version(tag: Self.shortTag(d)).map { ($0, d) } }).max(by: { $0.0 < $1.0 })?.1,
               let put = tags.last(where: { $0.put.repository == repository && $0.put.digest == newest.digest })?.put {
                let modules = self.repository(for: "modules")
                for digest in put.blobs where blobs[digest]?.repositories.contains(modules) == false {
                    blobs[digest]?.repositories.append(modules)
                }
                tags.append((3, ManifestPut(repository: modules, reference: String(parts[1]), digest: put.digest, bytes: put.bytes,
                                            mediaType: put.mediaType, blobs: put.blobs, children: put.children,
                                            what: "module discovery tag \(parts[1])")))
            }
        }
        let orderedTags = tags.enumerated().sorted { ($0.element.order, $0.offset) < ($1.element.order, $1.offset) }.map(\.element.put)
        return PushPlan(blobs: blobs.values.sorted { $0.descriptor.size > $1.descriptor.size },
                        manifests: children + orderedTags, problems: problems)
    }

    /// Images first, then channel aliases, then the release-channel repositories: a cluster never
    /// sees a channel pointing at something missing.
    static func order(layout: String, tag: String) -> Int {
        if layout == "release-channel" || layout.hasSuffix("/release") { return ReleaseChannel(rawValue: tag) != nil ? 5 : 4 }
        return ReleaseChannel(rawValue: tag) != nil ? 2 : 1
    }

    /// `io.deckhouse.image.short_tag`, else the tag of the ref name, else the digest's hex.
    static func shortTag(_ descriptor: Descriptor) -> String {
        if let short = descriptor.annotations?["io.deckhouse.image.short_tag"], !short.isEmpty { return short }
        if let name = descriptor.annotations?["org.opencontainers.image.ref.name"], !name.contains("@"),
           let colon = name.lastIndex(of: ":"), !name[colon...].contains("/") {
            return String(name[name.index(after: colon)...])
        }
        return descriptor.digest.hex
    }

    struct Node {
        var digest: Digest
        var bytes: [UInt8]
        var mediaType: MediaType
        var blobs: [Descriptor]
        var children: [Digest]
    }

    /// The manifest and, for an index, its children, depth first (children before parents).
    private func manifestTree(_ digest: Digest, mediaType: MediaType, layout: BundleIndex.Layout, what: String) throws -> [Node] {
        guard let location = bundle.blob(digest, in: layout) else {
            throw MirrorError.corruptBlob("\(what): manifest \(digest) is missing from the bundle")
        }
        let bytes = try bundle.readSmall(location)
        let actual = Streams.SHA256.digest(of: bytes)
        guard actual == digest else {
            throw MirrorError.corruptBlob("\(what): manifest \(digest) in the bundle is corrupt (its bytes hash to \(actual))")
        }
        let document = try ManifestDocument.parse(bytes, contentType: mediaType)
        switch document {
        case let .image(image):
            return [Node(digest: digest, bytes: bytes, mediaType: document.mediaType, blobs: [image.config] + image.layers, children: [])]
        case let .index(index):
            var nodes: [Node] = []
            for child in index.manifests {
                nodes += try manifestTree(child.digest, mediaType: child.mediaType, layout: layout, what: what)
            }
            nodes.append(Node(digest: digest, bytes: bytes, mediaType: document.mediaType, blobs: [], children: index.manifests.map(\.digest)))
            return nodes
        }
    }

    /// For `--dry-run`: how many of the plan's blobs (and bytes) the target already holds.
    public func present(_ plan: PushPlan) async throws -> (blobs: Int, bytes: Int64) {
        let found = Mutex<(Int, Int64)>((0, 0))
        let client = self.client
        try await forEachConcurrently(plan.blobs, limit: jobs) { blob in
            guard let repository = blob.repositories.first else { return }
            if try await client.blobSize(repository: repository, digest: blob.digest) != nil {
                found.withLock { $0.0 += 1; $0.1 += blob.descriptor.size }
            }
        }
        return found.withLock { $0 }
    }

    // MARK: push

    public func push(_ plan: PushPlan) async throws -> PushResult {
        let failed = Mutex<[Digest: String]>([:])
        let counts = Mutex<(uploaded: Int, mounted: Int, present: Int)>((0, 0, 0))
        progress.plan(blobs: plan.blobs.count, bytes: plan.blobBytes, images: plan.referenceCount)
        let client = self.client
        let progress = self.progress
        try await forEachConcurrently(plan.blobs, limit: jobs) { blob in
            do {
                let outcome = try await Self.pushBlob(blob, client: client, progress: progress)
                counts.withLock {
                    $0.uploaded += outcome.uploaded
                    $0.mounted += outcome.mounted
                    $0.present += outcome.present
                }
            } catch let error as MirrorError {
                // A corrupt blob fails its images only; the rest of the bundle still goes up.
                failed.withLock { $0[blob.digest] = "\(error)" }
                progress.blobDone(digest: blob.digest.string, bytes: blob.descriptor.size, transferred: false)
            }
        }
        var failures = plan.problems
        var broken = failed.withLock { $0 }
        for put in plan.manifests {
            if let reason = (put.blobs + put.children).lazy.compactMap({ broken[$0] }).first {
                broken[put.digest] = reason
                if !put.reference.hasPrefix("sha256:") { failures.append("\(put.what) not pushed: \(reason)") }
                continue
            }
            try await client.putManifest(repository: put.repository, reference: put.reference, bytes: put.bytes, mediaType: put.mediaType)
            if !put.reference.hasPrefix("sha256:") { progress.imageDone("\(client.host)/\(put.repository):\(put.reference)") }
        }
        let snapshot = progress.snapshot
        let seconds = progress.elapsed.inSeconds
        let (uploaded, mounted, present) = counts.withLock { $0 }
        return PushResult(target: target.description, repositories: plan.repositories.count, references: plan.referenceCount,
                          blobs: plan.blobs.count, blobsUploaded: uploaded, blobsMounted: mounted, blobsPresent: present,
                          bytesUploaded: snapshot.transferredBytes, seconds: seconds,
                          bytesPerSecond: seconds > 0 ? Double(snapshot.transferredBytes) / seconds : 0,
                          peakResidentBytes: peakResidentBytes(), failures: failures)
    }

    /// Into the first repository that lacks it the blob is uploaded (or found present);
    /// every other repository gets it by a cross-repository mount, which sends no bytes.
    static func pushBlob(_ blob: BlobPush, client: RegistryClient, progress: TransferProgress) async throws -> (uploaded: Int, mounted: Int, present: Int) {
        var source: String?
        var result = (uploaded: 0, mounted: 0, present: 0)
        var transferred = false
        for repository in blob.repositories {
            if try await client.blobSize(repository: repository, digest: blob.digest) != nil {
                result.present += 1
                source = source ?? repository
                continue
            }
            if let from = source, try await client.mountBlob(repository: repository, digest: blob.digest, from: from) {
                result.mounted += 1
                continue
            }
            let counter = StreamedBytes()
            let segments = blob.location.segments
            _ = try await client.uploadBlob(repository: repository, descriptor: blob.descriptor) {
                progress.retract(bytes: counter.reset())
                return FileSegmentsSequence(segments: segments, descriptor: blob.descriptor, what: blob.what) { n in
                    counter.add(n)
                    progress.addBytes(n)
                }
            }
            result.uploaded += 1
            transferred = true
            source = repository
        }
        progress.blobDone(digest: blob.digest.string, bytes: blob.descriptor.size, transferred: transferred)
        return result
    }
}
