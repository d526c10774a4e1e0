import BoundedPool
import Bundle
import Foundation
import OCI
import Registry
import Synchronization
import Version

/// Checks that a registry holds what the cluster's RegistryContainsRequiredImages check asks
/// for (d8-current.md §9), with the cluster's own item list: every digest of the controller
/// image's `deckhouse/modules/images_digests.json`, deduplicated, as `TARGET@sha256:<hex>`
/// labelled `module/<kebab-module>/<kebab-image>`, and the images of deployment
/// d8-system/deckhouse (containers and init containers) with their repository replaced by
/// TARGET. Mode Relax: only the deckhouse container's image. Each item is a manifest HEAD.
public struct RegistryCompleteness: Sendable {
    public enum Mode: String, Sendable, Codable, CaseIterable {
        case `default`, relax
        /// As the cluster writes it: `Default`, `Relax`.
        public var title: String { self == .default ? "Default" : "Relax" }
    }

    /// The images of deployment d8-system/deckhouse: (container name, image) pairs.
    public struct Deployment: Sendable {
        public var containers: [(name: String, image: String)]
        public var initContainers: [(name: String, image: String)]

        public init(containers: [(name: String, image: String)], initContainers: [(name: String, image: String)]) {
            self.containers = containers
            self.initContainers = initContainers
        }
    }

    public struct Item: Sendable, Codable {
        public var source: String
        public var image: String
        var reference: String
    }

    public struct Failure: Sendable, Codable {
        public var source: String
        public var image: String
        public var error: String
    }

    /// Everything else the bundle carries (every tag of every layout, children by digest,
    /// discovery tags), checked in the same shape: each must be there with the bundle's digest.
    public struct BundleSection: Sendable, Codable {
        public var total: Int
        public var failures: [Failure]
    }

    public struct Report: Sendable, Codable {
        public var mode: Mode
        public var total: Int
        public var failures: [Failure]
        /// Notes on how the list was built (e.g. a deployment image that is not a reference).
        public var warnings: [String]
        /// The rest of the bundle (nil when not asked for).
        public var bundle: BundleSection?
        /// A differential bundle: the blobs it left out, each where its images need it.
        public var leftOutBlobs: BundleSection?

        public var ok: Bool { failures.isEmpty && (bundle?.failures.isEmpty ?? true) && (leftOutBlobs?.failures.isEmpty ?? true) }

        /// The cluster's own wording: `Mode: Default`, then `N of M items processed, K items
        /// with errors`, the first five errors, `...and more`; `all M items are checked`. Then
        /// the rest of the bundle, in the same shape (its first 20 errors, then how many more).
        public var text: String {
            var lines = ["Mode: \(mode.title)"] + Self.lines(total: total, failures: failures, limit: 5)
            if let bundle, bundle.total > 0 {
                lines.append("The rest of the bundle (every tag, children by digest, discovery tags):")
                lines += Self.lines(total: bundle.total, failures: bundle.failures, limit: 20)
                if bundle.failures.count > 20 {
                    lines[lines.count - 1] = "  ...and \(bundle.failures.count - 20) more (every one is in the --json report)"
                }
            }
            if let leftOut = leftOutBlobs, leftOut.total > 0 {
                lines.append("Blobs left out of this differential bundle (left-out-blobs.inventory), in the repositories that need them:")
                lines += Self.lines(total: leftOut.total, failures: leftOut.failures, limit: 20)
            }
            return lines.joined(separator: "\n")
        }

        static func lines(total: Int, failures: [Failure], limit: Int) -> [String] {
            guard !failures.isEmpty else { return ["all \(total) items are checked"] }
            var lines = ["\(total - failures.count) of \(total) items processed, \(failures.count) items with errors:"]
            for failure in failures.prefix(limit) {
                lines.append("- source: \(failure.source)\n  image: \(failure.image)\n  error: \(failure.error)")
            }
            if failures.count > limit { lines.append("  ...and more") }
            return lines
        }
    }

    public let client: RegistryClient
    public let target: Reference
    public let verifier: BundleVerifier
    public let jobs: Int
    public let mode: Mode
    /// From the running cluster (`--kubeconfig`); nil: the bundle's controller images stand for it.
    public let deployment: Deployment?

    /// What a push of the bundle puts (`BundlePusher.plan()`): checked after the cluster's list.
    public let bundlePlan: PushPlan?
    /// Workers for the rest of the bundle (the cluster's own list keeps `jobs`).
    public let bundleJobs: Int

    public init(client: RegistryClient, target: Reference, verifier: BundleVerifier, jobs: Int = 3,
                mode: Mode = .default, deployment: Deployment? = nil, bundlePlan: PushPlan? = nil, bundleJobs: Int = 8) {
        self.bundlePlan = bundlePlan
        self.bundleJobs = max(1, bundleJobs)
        self.client = client
        self.target = target
        self.verifier = verifier
        self.jobs = max(1, jobs)
        self.mode = mode
        self.deployment = deployment
    }

    /// What the cluster will ask for, sorted by image as the cluster sorts its queue.
    public func items() async throws -> (items: [Item], warnings: [String]) {
        var byImage: [String: Item] = [:]
        var warnings: [String] = []
        func add(_ source: String, reference: String) {
            let separator = reference.hasPrefix("sha256:") ? "@" : ":"
            let image = "\(client.host)/\(target.repository)\(separator)\(reference)"
            byImage[image] = Item(source: source, image: image, reference: reference)
        }
        // The deckhouse container's image (by tag) and, in mode Default, everything else.
        var deckhouseImages: [(source: String, reference: String)] = []
        var controllerTags: [String] = []
        if let deployment {
            for (kind, containers) in [("containers", deployment.containers), ("init-containers", deployment.initContainers)] {
                for (name, image) in containers {
                    guard kind == "containers" && name == "deckhouse" || mode == .default else { continue }
                    guard let reference = Self.reference(of: image) else {
                        warnings.append("deckhouse/\(kind)/\(name): image '\(image)' names no tag or digest; not checked")
                        continue
                    }
                    if kind == "containers" && name == "deckhouse" {
                        guard !reference.hasPrefix("sha256:") || mode == .default else {
                            throw MirrorError.invalidInput("the deckhouse container's image \(image) is a digest reference; "
                                + "--check-mode relax checks it by tag, as the cluster does: use --check-mode default")
                        }
                        controllerTags.append(reference)
                    }
                    deckhouseImages.append(("deckhouse/\(kind)/\(name)", reference))
                }
            }
            if controllerTags.isEmpty {
                throw MirrorError.invalidInput("deployment d8-system/deckhouse has no container named deckhouse with an image; is this a Deckhouse cluster?")
            }
        } else {
            controllerTags = controllerVersions()
            deckhouseImages = controllerTags.map { ("deckhouse/containers/deckhouse", $0) }
            if controllerTags.isEmpty {
                throw MirrorError.invalidInput("the bundle holds no controller image (a vX.Y.Z tag in platform.tar's root layout); "
                    + "verify --registry needs platform.tar, or --kubeconfig to read the cluster's deployment")
            }
        }
        if mode == .default {
            for tag in controllerTags {
                guard let json = await verifier.controllerImagesDigests(tag: tag) else {
                    throw MirrorError.invalidInput("the bundle has no controller image \(tag) with deckhouse/modules/images_digests.json "
                        + "(the cluster runs \(tag)); give the bundle of that version, or --check-mode relax")
                }
                for (label, digest) in ClusterItems.moduleDigests(json) where byImage["\(client.host)/\(target.repository)@\(digest)"] == nil {
                    add(label, reference: digest.string)
                }
            }
        }
        // A Deployment image that is also a module digest takes the Deployment's label (as the
        // cluster's map assignment does); of two containers with one image, the first names it.
        var fromDeployment = Set<String>()
        for image in deckhouseImages where fromDeployment.insert(image.reference).inserted {
            add(image.source, reference: image.reference)
        }
        return (byImage.values.sorted { $0.image < $1.image }, warnings)
    }

    /// Controller versions of the bundle's root layout, oldest first.
    func controllerVersions() -> [String] {
        guard let root = verifier.bundle.layout(at: "") else { return [] }
        return root.resolvedTags().tags.map(\.tag).compactMap(Version.init(tag:))
            .sorted().map(\.tag)
    }

    /// The tag or digest of an image reference (`host/path:tag`, `host/path@sha256:...`).
    static func reference(of image: String) -> String? {
        if let at = image.range(of: "@") {
            let digest = String(image[at.upperBound...])
            return (try? Digest(parsing: digest)).map(\.string)
        }
        let last = image.split(separator: "/").last.map(String.init) ?? image
        guard let colon = last.lastIndex(of: ":") else { return nil }
        let tag = String(last[last.index(after: colon)...])
        return BundleIndex.Layout.isValidTag(tag) ? tag : nil
    }

    public func check() async throws -> Report {
        // A registry that cannot be reached, is not trusted or refuses the credentials is one
        // clear error, not the same failure reported once per image.
        try await client.ping()
        let (items, warnings) = try await self.items()
        let repository = target.repository
        let clusterList = items.map { Wanted(source: $0.source, image: $0.image, repository: repository, reference: $0.reference, digest: nil) }
        var report = Report(mode: mode, total: items.count, failures: try await head(clusterList, limit: jobs), warnings: warnings)
        if let bundlePlan {
            let rest = Self.rest(of: bundlePlan, host: client.host, skipping: Set(items.map(\.image)))
            report.bundle = BundleSection(total: rest.count, failures: try await head(rest, limit: bundleJobs))
            report.warnings += bundlePlan.problems.map { "not checked: \($0)" }
            if !bundlePlan.leftOut.isEmpty { report.leftOutBlobs = try await leftOutSection(bundlePlan) }
        }
        return report
    }

    /// One manifest to look up: where, and (for the rest of the bundle) the digest it must have.
    struct Wanted: Sendable {
        var source: String
        var image: String
        var repository: String
        var reference: String
        var digest: Digest?
    }

    /// Every manifest a push of the bundle puts, but those of the cluster's list.
    static func rest(of plan: PushPlan, host: String, skipping: Set<String>) -> [Wanted] {
        var seen = skipping
        var wanted: [Wanted] = []
        for put in plan.manifests {
            let image = "\(host)/\(put.repository)\(put.isTag ? ":" : "@")\(put.reference)"
            guard seen.insert(image).inserted else { continue }
            wanted.append(Wanted(source: put.isTag ? put.what : "\(put.what) (a child by digest)", image: image,
                                 repository: put.repository, reference: put.reference, digest: put.digest))
        }
        return wanted
    }

    /// HEADs each of `wanted` with `limit` workers: the failures in `wanted`'s order, worded as
    /// the cluster words them (a missing one is its 404; one with another digest says both).
    func head(_ wanted: [Wanted], limit: Int) async throws -> [Failure] {
        let failures = Mutex<[(Int, Failure)]>([])
        let client = self.client
        try await forEachConcurrently(Array(wanted.enumerated()), limit: limit) { index, item in
            let url = "\(client.configuration.scheme)://\(client.host)/v2/\(RegistryClient.escaped(item.repository))/manifests/\(RegistryClient.escaped(item.reference, segment: true))"
            var error: String?
            do {
                switch try await client.manifestDescriptor(repository: item.repository, reference: item.reference)?.digest {
                case nil: error = "HEAD \(url): unexpected status code 404 Not Found"
                case let found? where item.digest != nil && found != item.digest:
                    error = "HEAD \(url): the registry has \(found), the bundle \(item.digest?.string ?? "")"
                default: break
                }
            } catch let failure {
                error = "HEAD \(url): \(failure)"
            }
            if let error { failures.withLock { $0.append((index, Failure(source: item.source, image: item.image, error: error))) } }
        }
        // A cancelled run (Ctrl-C) failed its HEADs for that reason, not because images are missing.
        try Task.checkCancellation()
        return failures.withLock { $0 }.sorted { $0.0 < $1.0 }.map(\.1)
    }
}
