import BoundedPool
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
    /// Manifests (tags and children by digest) the target already held with the same digest,
    /// so not put again.
    public var manifestsPresent: Int
    public var bytesUploaded: Int64
    public var seconds: Double
    public var bytesPerSecond: Double
    public var peakResidentBytes: Int64
    /// Images not pushed, each with why (a corrupt or missing blob in the bundle).
    public var failures: [String]
    /// What the bundle held, as pushed (d8's summary).
    public var platformVersions: [String]
    public var modules: [String]
    public var packages: [String]
    public var plugins: [String]
    public var securityDatabases: [String]
    /// Attestations (`.att` tags: VEX) pushed.
    public var vexAttestations: Int
    /// What the short tag rule decided (descriptors without a short tag, tags given twice).
    public var warnings: [String]
    /// Copies of blobs in the bundle whose bytes failed their digest, each naming the tar, the
    /// entry, the images that need it and whether another copy took its place.
    public var damagedCopies: [String]
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
    /// When it goes up: manifests of one stage go concurrently, stages one after the other
    /// (children by digest level by level, images before their indexes, then tags in
    /// `BundlePusher.order`'s order).
    var stage: Int
    var isTag: Bool { !reference.hasPrefix("sha256:") }
}

/// One distinct blob and every repository of the target that needs it.
struct BlobPush: Sendable {
    var digest: Digest
    var descriptor: Descriptor
    /// Every copy the bundle holds, the one of the layout that first needs it first: an upload
    /// whose copy fails its digest goes on with the next.
    var copies: [BlobLocation]
    var repositories: [String]
    /// The first image that needs it (for messages).
    var what: String
    /// Every image that needs it (tar:layout tag).
    var users: Set<String> = []
}

/// The push, planned from the bundle's index.json files alone.
public struct PushPlan: Sendable {
    var blobs: [BlobPush]
    /// In order: children by digest, then tags, channel tags, release channels, discovery tags.
    var manifests: [ManifestPut]
    /// Images that cannot be pushed (a missing or corrupt manifest in the bundle).
    public var problems: [String]
    /// What the short tag rule decided, one line each (see `LayoutTags`).
    public var warnings: [String]
    /// Manifest copies in the bundle that fail their digest, where another copy is intact.
    public var damagedManifests: [String]
    /// What is pushed, by kind.
    public var summary: PushSummary
    /// Blobs a differential bundle left out that the pushed images need: the target must hold them.
    var leftOut: [LeftOutNeed] = []

    public var blobCount: Int { blobs.count }
    public var blobBytes: Int64 { blobs.reduce(0) { $0 + $1.descriptor.size } }
    public var referenceCount: Int { manifests.filter { !$0.reference.hasPrefix("sha256:") }.count }
    public var repositories: [String] { Array(Set(manifests.map(\.repository))).sorted() }
}

/// Pushes a bundle into a registry straight from its tars (dkp-source-and-bundle.md §3,
/// d8-current.md §2, §4, §6): each layout at path P goes to TARGET/P (a leading `modules`
/// replaced by the modules path suffix, `packages` by the packages path suffix), each
/// index.json descriptor tagged by the short tag rule (`LayoutTags`); then the discovery tags
/// `modules:<m>`, `packages:<p>`, `deckhouse-cli/plugins:<n>`. Blobs first, through one bounded
/// pool, each read out of the tar and hashed on the way; a blob goes up once and is mounted
/// into every other repository that needs it; then manifests, children before parents,
/// tags after the images they name, release channels after them, discovery tags last.
public struct BundlePusher: Sendable {
    public let client: RegistryClient
    public let bundle: BundleIndex
    public let target: Reference
    public let modulesPathSuffix: String
    public let packagesPathSuffix: String
    public let jobs: Int
    public let progress: TransferProgress
    /// A differential bundle's `left-out-blobs.inventory` (`DifferentialBundle.leftOut(inBundle:)`):
    /// a blob it lists need not be in the tars, the target must hold it.
    public var leftOut: Inventory?

    public init(client: RegistryClient, bundle: BundleIndex, target: Reference, modulesPathSuffix: String,
                packagesPathSuffix: String = "/packages", jobs: Int, progress: TransferProgress) {
        self.client = client
        self.bundle = bundle
        self.target = target
        self.modulesPathSuffix = modulesPathSuffix
        self.packagesPathSuffix = packagesPathSuffix
        self.jobs = max(1, jobs)
        self.progress = progress
    }

    /// Where each layout goes in the target (`LayoutRepositories`, the rule verify shares).
    public var layoutRepositories: LayoutRepositories {
        LayoutRepositories(root: target.repository, modulesPathSuffix: modulesPathSuffix, packagesPathSuffix: packagesPathSuffix)
    }

    public func repository(for layoutPath: String) -> String {
        layoutRepositories.repository(for: layoutPath)
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
        let damagedCopies = Mutex<[String]>([])
        let counts = Mutex<(uploaded: Int, mounted: Int, present: Int)>((0, 0, 0))
        let lacked = Mutex<Set<String>>([])  // "repository@digest" of blobs a lookup found missing
        let refused = Mutex<[String: String]>([:])  // "repository@digest" -> why the registry refused the blob there
        // A differential bundle: refused here, before any upload or manifest, when the target lacks a left-out blob.
        let leftOut = try await completeLeftOut(plan)
        failed.withLock { $0.merge(leftOut.failed) { a, _ in a } }
        counts.withLock { $0.mounted += leftOut.mounted; $0.present += leftOut.present }
        progress.plan(blobs: plan.blobs.count, bytes: plan.blobBytes, images: plan.referenceCount)
        let client = self.client
        let progress = self.progress
        try await forEachConcurrently(plan.blobs, limit: jobs) { blob in
            do {
                let outcome = try await Self.pushBlob(blob, client: client, progress: progress, lacked: { repository in
                    lacked.withLock { _ = $0.insert("\(repository)@\(blob.digest)") }
                }, refused: { repository, reason in
                    refused.withLock { $0["\(repository)@\(blob.digest)"] = reason }
                }) { line in
                    damagedCopies.withLock { $0.append(line) }
                }
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
        let manifests = try await pushManifests(plan.manifests, brokenBlobs: failed.withLock { $0 }, lacked: lacked.withLock { $0 },
                                                refusedBlobs: refused.withLock { $0 })
        let failures = plan.problems + manifests.failures
        let snapshot = progress.snapshot
        let seconds = progress.elapsed.inSeconds
        let (uploaded, mounted, present) = counts.withLock { $0 }
        return PushResult(target: target.description, repositories: plan.repositories.count, references: plan.referenceCount,
                          blobs: plan.blobs.count, blobsUploaded: uploaded, blobsMounted: mounted, blobsPresent: present,
                          manifestsPresent: manifests.present,
                          bytesUploaded: snapshot.transferredBytes, seconds: seconds,
                          bytesPerSecond: seconds > 0 ? Double(snapshot.transferredBytes) / seconds : 0,
                          peakResidentBytes: peakResidentBytes(), failures: failures,
                          platformVersions: plan.summary.platformVersions, modules: plan.summary.modules,
                          packages: plan.summary.packages, plugins: plan.summary.plugins,
                          securityDatabases: plan.summary.securityDatabases, vexAttestations: plan.summary.vexAttestations,
                          warnings: plan.warnings, damagedCopies: plan.damagedManifests + damagedCopies.withLock { $0 }.sorted())
    }

    /// The manifests, stage by stage (see `ManifestPut.stage`), each stage's concurrently. Each is
    /// looked up first and put only when the target lacks it under that reference with that
    /// digest: a re-push changes nothing that is already right (and passes a registry with
    /// immutable tags). A manifest whose blob or child is broken is held back; so is one the
    /// registry refuses (a 4xx: a policy, an immutable tag, a quota), with what depends on it in
    /// its repository (an index, another tag of it), while the rest goes on. A failure of the
    /// registry itself (5xx past the retries, the connection, credentials) still stops the push.
    /// The lookup is skipped where the target cannot hold the manifest: a blob of it was missing
    /// from its repository (`lacked`, "repository@digest"), or this push has just put a child of
    /// it or, for a tag, the manifest itself there. That trusts that a registry holding a
    /// manifest holds its blobs in that repository; where it does not (a blob deleted through
    /// the API), the manifest's same bytes are put again. `refusedBlobs` ("repository@digest"
    /// -> why) holds back the manifests of that repository that need the blob.
    func pushManifests(_ manifests: [ManifestPut], brokenBlobs: [Digest: String],
                       lacked: Set<String> = [], refusedBlobs: [String: String] = [:]) async throws -> (failures: [String], present: Int) {
        struct State { var broken: [String: String] = [:]; var failures: [String] = []; var present = 0; var put = Set<String>() }
        let state = Mutex(State())
        let client = self.client
        let progress = self.progress
        let stages = Dictionary(grouping: manifests, by: \.stage).sorted { $0.key < $1.key }.map(\.value)
        for stage in stages {
            try await forEachConcurrently(stage, limit: jobs) { put in
                let key = "\(put.repository)@\(put.digest)"
                let held = state.withLock { state -> String? in
                    if let reason = put.blobs.compactMap({ brokenBlobs[$0] ?? refusedBlobs["\(put.repository)@\($0)"] }).first { return reason }
                    let broken = state.broken
                    return put.children.compactMap { broken["\(put.repository)@\($0)"] }.first ?? broken[key]
                }
                if let reason = held {
                    state.withLock { state in
                        state.broken[key] = state.broken[key] ?? reason
                        if put.isTag { state.failures.append("\(put.what) not pushed: \(reason)") }
                    }
                    return
                }
                let missing = put.blobs.contains { lacked.contains("\(put.repository)@\($0)") } || state.withLock { state in
                    put.children.contains { state.put.contains("\(put.repository)@\($0)") } || (put.isTag && state.put.contains(key))
                }
                do {
                    if !missing, try await Self.digestPresent(put, client: client) == put.digest {
                        state.withLock { $0.present += 1 }
                    } else {
                        try await client.putManifest(repository: put.repository, reference: put.reference, bytes: put.bytes, mediaType: put.mediaType)
                        // A stale tag put again says nothing of the digest; a digest put, or
                        // a tag whose manifest was missing, says it was not there.
                        if !put.isTag || missing { state.withLock { _ = $0.put.insert(key) } }
                    }
                } catch let error as RegistryError where Self.refusesOnlyThis(error) {
                    let reason = "the registry refused \(put.repository)\(put.isTag ? ":" : "@")\(put.reference): \(error)"
                    state.withLock { state in
                        state.broken[key] = reason
                        state.failures.append(put.isTag ? "\(put.what) not pushed: \(reason)" : "\(put.what): \(reason)")
                    }
                    return
                }
                if put.isTag { progress.imageDone("\(client.host)/\(put.repository):\(put.reference)") }
            }
        }
        return state.withLock { ($0.failures, $0.present) }
    }

    /// What the target has under the manifest's reference; nil when nothing, or when it refuses
    /// to say (403): some registries refuse a HEAD to a user who may still PUT (JFrog,
    /// RTFACT-13797), so the manifest is put, as go-containerregistry does, and only a refused
    /// PUT fails it.
    private static func digestPresent(_ put: ManifestPut, client: RegistryClient) async throws -> Digest? {
        do {
            return try await client.manifestDescriptor(repository: put.repository, reference: put.reference)?.digest
        } catch RegistryError.forbidden {
            return nil
        }
    }

    /// A refusal of one request (4xx other than credentials, rate limits and a body-size limit
    /// in the path, which every large request meets), not of the push.
    static func refusesOnlyThis(_ error: RegistryError) -> Bool {
        switch error {
        case .forbidden, .notFound: return true
        case let .http(_, _, status, _): return (400..<500).contains(status) && ![401, 408, 413, 429].contains(status)
        default: return false
        }
    }

    /// Into the first repository that lacks it the blob is uploaded (or found present);
    /// every other repository gets it by a cross-repository mount, which sends no bytes. The
    /// upload reads the blob's first copy; a copy whose bytes fail the digest is reported
    /// through `damaged` and the next is read, until one is intact (else it throws).
    /// `lacked` hears of each repository a lookup found without the blob; `refused`, of each
    /// repository that refused it by its own rules (a 4xx: a name it does not take, a path the
    /// user may not write), which fails that repository's images only.
    static func pushBlob(_ blob: BlobPush, client: RegistryClient, progress: TransferProgress,
                         lacked: @Sendable (String) -> Void = { _ in },
                         refused: @Sendable (_ repository: String, _ reason: String) -> Void = { _, _ in },
                         damaged: @Sendable (String) -> Void) async throws -> (uploaded: Int, mounted: Int, present: Int) {
        var source: String?
        var result = (uploaded: 0, mounted: 0, present: 0)
        var transferred = false
        var intactCopy = 0  // a copy found damaged is neither read nor reported again for the next repository
        for repository in blob.repositories {
            do {
                // Once this push has uploaded the blob, the registry lacked it: the other
                // repositories are asked for a mount at once (one request less for each on a fresh
                // registry); only a refused mount is followed by a lookup. A re-push only looks.
                if transferred, let from = source, try await client.mountBlob(repository: repository, digest: blob.digest, from: from) {
                    result.mounted += 1
                    continue
                }
                if try await client.blobSize(repository: repository, digest: blob.digest) != nil {
                    result.present += 1
                    source = source ?? repository
                    continue
                }
                lacked(repository)
                if !transferred, let from = source, try await client.mountBlob(repository: repository, digest: blob.digest, from: from) {
                    result.mounted += 1
                    continue
                }
                // The registry refused the mount: these bytes go a second time, and the total says so.
                if transferred { progress.plan(blobs: 0, bytes: blob.descriptor.size, images: 0) }
                intactCopy = try await uploadIntactCopy(blob, from: intactCopy, to: repository, client: client, progress: progress, damaged: damaged)
                result.uploaded += 1
                transferred = true
                source = repository
            } catch let error as RegistryError where refusesOnlyThis(error) {
                refused(repository, "the registry refused blob \(blob.digest) in \(repository): \(error.failure)")
            }
        }
        progress.blobDone(digest: blob.digest.string, bytes: blob.descriptor.size, transferred: transferred)
        return result
    }

    /// Uploads the first of the blob's copies from `first` on whose bytes match its digest (the
    /// check ends each upload before its last byte, and the registry's session of a bad copy is
    /// closed); returns that copy's position.
    private static func uploadIntactCopy(_ blob: BlobPush, from first: Int, to repository: String, client: RegistryClient,
                                         progress: TransferProgress, damaged: @Sendable (String) -> Void) async throws -> Int {
        for (number, copy) in blob.copies.enumerated().dropFirst(first) {
            let counter = StreamedBytes()
            do {
                _ = try await client.uploadBlob(repository: repository, descriptor: blob.descriptor) {
                    progress.retract(bytes: counter.reset())
                    return FileSegmentsSequence(segments: copy.segments, descriptor: blob.descriptor, what: "\(copy.tar): \(copy.entry)") { n in
                        counter.add(n)
                        progress.addBytes(n)
                    }
                }
                return number
            } catch let MirrorError.corruptBlob(detail) {
                progress.retract(bytes: counter.reset())
                let next = number + 1 < blob.copies.count ? "the copy in \(blob.copies[number + 1].tar) is tried next" : "no other copy is left"
                damaged("\(detail); it is needed by \(describeUsers(blob)); \(next)")
            }
        }
        let tars = blob.copies.map(\.tar)
        throw MirrorError.corruptBlob("blob \(blob.digest) has no intact copy in the bundle (\(tars.count == 1 ? "its copy" : "every copy") "
            + "fails its digest: \(tars.joined(separator: ", ")))")
    }

    /// "3 images: a, b, c" or "57 images: a, b, c, ...".
    static func describeUsers(_ blob: BlobPush) -> String {
        let users = blob.users.sorted()
        let shown = users.prefix(3).joined(separator: ", ")
        return "\(users.count) image\(users.count == 1 ? "" : "s"): \(shown)\(users.count > 3 ? ", ..." : "")"
    }
}
