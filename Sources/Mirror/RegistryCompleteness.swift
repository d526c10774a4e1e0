import Bundle
import Foundation
import OCI
import Registry
import Synchronization
import Version

/// Checks that a registry holds every image a bundle makes required, the way the cluster's
/// RegistryContainsRequiredImages check does (dkp-source-and-bundle.md §4): a HEAD of each
/// manifest, by digest for what images_digests.json lists, by tag for the controller, the
/// installers and module versions.
public struct RegistryCompleteness: Sendable {
    public struct Item: Sendable, Codable {
        public var source: String
        public var image: String
        var repository: String
        var reference: String
    }

    public struct Failure: Sendable, Codable {
        public var source: String
        public var image: String
        public var error: String
    }

    public struct Report: Sendable, Codable {
        public var total: Int
        public var failures: [Failure]

        /// The cluster's own wording: `N of M items processed, K items with errors`, the first
        /// five errors, `...and more`; `all M items are checked` when complete.
        public var text: String {
            guard !failures.isEmpty else { return "all \(total) items are checked" }
            var lines = ["\(total - failures.count) of \(total) items processed, \(failures.count) items with errors"]
            for failure in failures.prefix(5) {
                lines.append("- source: \(failure.source)\n  image: \(failure.image)\n  error: \(failure.error)")
            }
            if failures.count > 5 { lines.append("  ...and more") }
            return lines.joined(separator: "\n")
        }
    }

    public let client: RegistryClient
    public let pusher: BundlePusher
    public let verifier: BundleVerifier
    public let jobs: Int

    public init(client: RegistryClient, pusher: BundlePusher, verifier: BundleVerifier, jobs: Int) {
        self.client = client
        self.pusher = pusher
        self.verifier = verifier
        self.jobs = max(1, jobs)
    }

    /// What the cluster will ask for, mapped onto the target as push maps the bundle.
    public func items() async -> [Item] {
        var items: [Item] = []
        var seen = Set<String>()
        func add(_ source: String, repository: String, reference: String) {
            let image = reference.hasPrefix("sha256:") ? "\(client.host)/\(repository)@\(reference)" : "\(client.host)/\(repository):\(reference)"
            guard seen.insert(image).inserted else { return }
            items.append(Item(source: source, image: image, repository: repository, reference: reference))
        }
        for layout in verifier.bundle.layouts where ["", "install", "install-standalone"].contains(layout.path) {
            for descriptor in layout.descriptors {
                let tag = BundlePusher.shortTag(descriptor)
                guard Version(tag: tag) != nil else { continue }
                add(layout.path.isEmpty ? "deckhouse" : layout.path, repository: pusher.repository(for: layout.path), reference: tag)
            }
        }
        for (layout, version, required) in await verifier.requiredDigests() {
            let repository = pusher.repository(for: layout.path)
            if !layout.path.isEmpty { add(layout.path, repository: repository, reference: version) }
            for (source, digest) in required { add(source, repository: repository, reference: digest.string) }
        }
        return items
    }

    public func check() async throws -> Report {
        // A registry that cannot be reached, is not trusted or refuses the credentials is one
        // clear error, not the same failure reported once per image.
        try await client.ping()
        let items = await self.items()
        let failures = Mutex<[(Int, Failure)]>([])
        let client = self.client
        try await forEachConcurrently(Array(items.enumerated()), limit: jobs) { index, item in
            let url = "\(client.configuration.scheme)://\(client.host)/v2/\(item.repository)/manifests/\(item.reference)"
            do {
                if try await client.manifestDescriptor(repository: item.repository, reference: item.reference) == nil {
                    failures.withLock { $0.append((index, Failure(source: item.source, image: item.image,
                                                                   error: "HEAD \(url): unexpected status code 404 Not Found"))) }
                }
            } catch {
                failures.withLock { $0.append((index, Failure(source: item.source, image: item.image, error: "HEAD \(url): \(error)"))) }
            }
        }
        // A cancelled run (Ctrl-C) failed its HEADs for that reason, not because images are missing.
        try Task.checkCancellation()
        return Report(total: items.count, failures: failures.withLock { $0 }.sorted { $0.0 < $1.0 }.map(\.1))
    }
}
