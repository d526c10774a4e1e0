import Bundle
import Foundation
import NIOCore
import OCI
import Registry
import Streams
import TestSupport

@testable import Cluster

/// Kubeconfig YAML with one context `dkp-test` (cluster `dkp-test-cluster`, user
/// `dkp-test-user`); `cluster` and `user` are extra lines of those entries.
func clusterKubeconfig(server: String, cluster: [String] = [], user: [String],
                    currentContext: String? = "dkp-test") -> String {
    var lines = [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: dkp-test-cluster",
        "  cluster:",
        "    server: \(server)",
    ]
    lines += cluster.map { "    " + $0 }
    lines += [
        "contexts:",
        "- name: dkp-test",
        "  context:",
        "    cluster: dkp-test-cluster",
        "    user: dkp-test-user",
        "    namespace: default",
        "users:",
        "- name: dkp-test-user",
        "  user:",
    ]
    lines += user.map { "    " + $0 }
    if let currentContext { lines.append("current-context: \(currentContext)") }
    lines.append("preferences: {}")
    return lines.joined(separator: "\n") + "\n"
}

/// A temporary directory removed when the value goes away.
final class ClusterScratch: Sendable {
    let url: URL
    init() throws { url = try TestRegistry.temporaryDirectory("dkp-cluster-test") }
    deinit { try? FileManager.default.removeItem(at: url) }
    var path: String { url.path }

    /// Writes `text` to `name` inside the directory (creating parents) and returns the path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        try write(name, Array(text.utf8))
    }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let file = url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: file)
        return file.path
    }
}

func clusterBase64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
func clusterBase64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

/// Detection options for tests: short timeouts and a single attempt for the registry.
func clusterTestOptions(official: Set<String> = ["registry.deckhouse.ru", "registry.deckhouse.io"]) -> ClusterDetector.Options {
    var options = ClusterDetector.Options()
    options.officialRegistries = official
    options.registryConnectTimeout = .seconds(3)
    options.registryIdleTimeout = .seconds(10)
    options.registryMaxAttempts = 1
    options.apiConnectTimeout = .seconds(5)
    options.apiRequestTimeout = .seconds(10)
    return options
}

/// A synthetic deckhouse controller image: a base layer, a stale layer with another
/// edition, and the top layer with the real `deckhouse/edition` and `deckhouse/version`.
struct ClusterTestImage: Sendable {
    var manifestDigest: Digest
    var manifestBytes: [UInt8]

    static func push(_ client: RegistryClient, repository: String, tag: String?, edition: String = "ee\n",
                     version: String = "v1.69.3\n") async throws -> ClusterTestImage {
        let layers: [[(path: String, contents: [UInt8])]] = [
            [("etc/os-release", Array("ID=distroless\n".utf8)), ("usr/bin/deckhouse-controller", Array(repeating: 0x7f, count: 4096))],
            [("deckhouse/edition", Array("ce\n".utf8)), ("deckhouse/modules/images_digests.json", Array("{}".utf8))],
            [("deckhouse/edition", Array(edition.utf8)), ("deckhouse/version", Array(version.utf8))],
        ]
        var descriptors: [Descriptor] = []
        for files in layers {
            let bytes = try LayerArchive.build(files: files, compression: .gzip)
            let descriptor = Descriptor(mediaType: .ociLayerGzip, digest: SHA256.digest(of: bytes), size: Int64(bytes.count))
            try await client.uploadBlob(repository: repository, descriptor: descriptor) { BytesSequence(bytes: bytes) }
            descriptors.append(descriptor)
        }
        let configBytes = Array("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"config\":{\"WorkingDir\":\"/deckhouse\"}}".utf8)
        let config = Descriptor(mediaType: .ociConfig, digest: SHA256.digest(of: configBytes), size: Int64(configBytes.count))
        try await client.uploadBlob(repository: repository, descriptor: config) { BytesSequence(bytes: configBytes) }
        let manifest = ImageManifest(schemaVersion: 2, mediaType: .ociManifest, config: config, layers: descriptors)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = Array(try encoder.encode(manifest))
        let digest = try await client.putManifest(repository: repository, reference: tag ?? SHA256.digest(of: bytes).string,
                                                  bytes: bytes, mediaType: .ociManifest)
        return ClusterTestImage(manifestDigest: digest, manifestBytes: bytes)
    }

    /// An index over this image (as linux/amd64) and a dummy arm64 entry, tagged `tag`.
    func pushIndex(_ client: RegistryClient, repository: String, tag: String) async throws -> Digest {
        let index = ImageIndex(schemaVersion: 2, mediaType: .ociIndex, manifests: [
            Descriptor(mediaType: .ociManifest, digest: manifestDigest, size: Int64(manifestBytes.count),
                       platform: Platform(architecture: "amd64", os: "linux")),
        ])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = Array(try encoder.encode(index))
        return try await client.putManifest(repository: repository, reference: tag, bytes: bytes, mediaType: .ociIndex)
    }
}

/// A registry address where nothing listens (connections are refused at once).
let clusterUnreachableRegistry = "127.0.0.1:1"
