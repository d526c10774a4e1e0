import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// The one check of what a target registry holds, for every end-to-end test that pushes or
/// copies: a tagged manifest is whole (its blobs, or its children, are all there), and after a
/// push every reference the bundle carries is there with its digest.
enum TargetCheck {
    /// A client of `target`: TLS with its CA when it has one, user `rw` when `password` is given.
    static func client(_ target: TestRegistry, password: String? = nil) throws -> RegistryClient {
        var configuration = RegistryConfiguration()
        configuration.caFile = target.caFile
        configuration.insecure = !target.isTLS
        configuration.credential = password.map { Credential(username: "rw", password: $0) }
        return try RegistryClient(host: target.host, configuration: configuration)
    }

    /// Every index.json descriptor of the bundle, as (repository under `system/deckhouse`, short tag, descriptor).
    static func references(_ bundle: URL) async throws -> [(repository: String, tag: String, descriptor: Descriptor)] {
        var references: [(String, String, Descriptor)] = []
        for tar in try FileManager.default.contentsOfDirectory(atPath: bundle.path).sorted() where tar.hasSuffix(".tar") {
            let folder = try await PullTests.extract([bundle.appendingPathComponent(tar)])
            let enumerator = FileManager.default.enumerator(atPath: folder.path)
            while let path = enumerator?.nextObject() as? String {
                guard (path as NSString).lastPathComponent == "index.json" else { continue }
                let layout = (path as NSString).deletingLastPathComponent
                let repository = layout.isEmpty ? "system/deckhouse" : "system/deckhouse/\(layout)"
                for descriptor in try PullTests.index(folder, layout).manifests {
                    references.append((repository, descriptor.annotations?["io.deckhouse.image.short_tag"] ?? "", descriptor))
                }
            }
        }
        return references
    }

    /// The manifest `digest` of `repository` is whole: an image's config and layers are there
    /// with their sizes, an index's children are there.
    static func expectWhole(_ client: RegistryClient, repository: String, digest: Digest, label: String) async throws {
        let manifest = try await client.manifest(repository: repository, reference: digest.string)
        switch manifest.document {
        case let .image(image):
            for blob in [image.config] + image.layers {
                #expect(try await client.blobSize(repository: repository, digest: blob.digest) == blob.size,
                        "\(label) is tagged but its blob \(blob.digest) is missing")
            }
        case let .index(index):
            for child in index.manifests {
                #expect(try await client.manifestDescriptor(repository: repository, reference: child.digest.string) != nil,
                        "\(label) is tagged but its child \(child.digest) is missing")
            }
        }
    }

    /// After a push of `bundle`: every reference of it that the target has points at the same
    /// digest and is whole (nothing half-pushed looks complete); with `complete`, every
    /// reference is there, digest references by digest too, and each of `modules` has its
    /// discovery tag `modules:<name>`. Returns how many references are there.
    @discardableResult
    static func expectComplete(_ target: TestRegistry, password: String? = nil, bundle: URL,
                               modules: [String] = [], complete: Bool = true) async throws -> Int {
        let client = try client(target, password: password)
        var present = 0
        for (repository, tag, descriptor) in try await references(bundle) {
            guard let found = try await client.manifestDescriptor(repository: repository, reference: tag) else {
                #expect(!complete, "\(repository):\(tag) missing")
                continue
            }
            present += 1
            #expect(found.digest == descriptor.digest, "\(repository):\(tag)")
            if tag == descriptor.digest.hex {
                #expect(try await client.manifestDescriptor(repository: repository, reference: descriptor.digest.string) != nil,
                        "\(repository)@\(descriptor.digest)")
            }
            try await expectWhole(client, repository: repository, digest: descriptor.digest, label: "\(repository):\(tag)")
        }
        for module in modules {
            #expect(try await client.manifestDescriptor(repository: "system/deckhouse/modules", reference: module) != nil, "modules:\(module)")
        }
        await client.shutdown()
        return present
    }

    /// The modules of the synthetic edition a full pull carries.
    static let editionModules = ["console", "commander", "stronghold"]
}
