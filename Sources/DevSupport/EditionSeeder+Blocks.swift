import Bundle
import Foundation
import NIOCore
import OCI
import Registry
import Streams

// The building blocks the seeder composes an edition from.
extension EditionSeeder {
    /// A layer of incompressible synthetic bytes, uploaded; returns its descriptor.
    /// `count` images in the edition root sharing one layer and config, eight PUTs at a time.
    func pushCheapImages(_ count: Int) async throws -> [Digest] {
        let layer = try await pushSynthetic(repository: root, size: 1024, seed: 77)
        let config = Array(#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.utf8)
        let configDescriptor = try await pushBytes(repository: root, bytes: config, mediaType: .ociConfig)
        var digests = [Digest?](repeating: nil, count: count)
        for start in stride(from: 0, to: count, by: 8) {
            try await withThrowingTaskGroup(of: (Int, Digest).self) { group in
                for i in start..<min(count, start + 8) {
                    group.addTask {
                        let manifest = ImageManifest(schemaVersion: 2, mediaType: .ociManifest, config: configDescriptor, layers: [layer],
                                                     annotations: ["io.deckhouse.test.number": String(i)])
                        return (i, try await putManifest(repository: root, value: manifest, mediaType: .ociManifest, tag: nil))
                    }
                }
                for try await (i, digest) in group { digests[i] = digest }
            }
        }
        return digests.compactMap { $0 }
    }

    /// The shared base layer, put into `repository` (none when `commonBaseSize` is 0).
    func commonBase(in repository: String) async throws -> [Descriptor] {
        guard options.commonBaseSize > 0 else { return [] }
        return [try await pushSynthetic(repository: repository, size: options.commonBaseSize, seed: Options.commonBaseSeed)]
    }

    func pushSynthetic(repository: String, size: Int64, seed: UInt64) async throws -> Descriptor {
        let blob = SyntheticBlob(size: size, seed: seed)
        let descriptor = Descriptor(mediaType: .ociLayerGzip, digest: try await blob.digest(), size: size)
        if try await client.blobSize(repository: repository, digest: descriptor.digest) == nil {
            try await client.uploadBlob(repository: repository, descriptor: descriptor) { blob }
        }
        return descriptor
    }

    /// A real tar layer holding `files`, compressed as the options say.
    func pushFiles(repository: String, files: [(String, [UInt8])]) async throws -> Descriptor {
        let bytes = try LayerArchive.build(files: files.map { (path: $0.0, contents: $0.1) }, compression: options.layerCompression)
        let mediaType: MediaType = switch options.layerCompression {
        case .zstd: .ociLayerZstd
        case .none: .ociLayer
        default: .ociLayerGzip
        }
        return try await pushBytes(repository: repository, bytes: bytes, mediaType: mediaType)
    }

    func pushBytes(repository: String, bytes: [UInt8], mediaType: MediaType) async throws -> Descriptor {
        let descriptor = Descriptor(mediaType: mediaType, digest: SHA256.digest(of: bytes), size: Int64(bytes.count))
        try await client.uploadBlob(repository: repository, descriptor: descriptor) { BytesSequence(bytes: bytes) }
        return descriptor
    }

    /// An image manifest over `layers`, pushed under `tag` (or only by digest).
    func pushImage(repository: String, layers: [Descriptor], tag: String?, docker: Bool = false,
                           label: String? = nil, annotations: [String: String]? = nil) async throws -> Digest {
        let tagLabel = label.map { ",\"tag\":\"\($0)\"" } ?? ""
        let config = Array("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"config\":{\"Labels\":{\"repository\":\"\(repository)\"\(tagLabel)}}}".utf8)
        let configDescriptor = try await pushBytes(repository: repository, bytes: config, mediaType: docker ? .dockerConfig : .ociConfig)
        let manifestLayers = docker ? layers.map { Descriptor(mediaType: .dockerLayerGzip, digest: $0.digest, size: $0.size) } : layers
        let manifest = ImageManifest(schemaVersion: 2, mediaType: docker ? .dockerManifest : .ociManifest,
                                     config: configDescriptor, layers: manifestLayers, annotations: annotations)
        return try await putManifest(repository: repository, value: manifest, mediaType: docker ? .dockerManifest : .ociManifest, tag: tag)
    }

    func putManifest<T: Encodable>(repository: String, value: T, mediaType: MediaType, tag: String?) async throws -> Digest {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = Array(try encoder.encode(value))
        let digest = SHA256.digest(of: bytes)
        try await client.putManifest(repository: repository, reference: tag ?? digest.string, bytes: bytes, mediaType: mediaType)
        return digest
    }

    /// Platform image `number` of version `index`: image 0 is a two-platform index, image 1
    /// a Docker schema 2 manifest, the rest OCI images; all share the version's base layer.
    func pushPlatformImage(version index: Int, number: Int) async throws -> Digest {
        let seed = 10_000 + UInt64(index * 100 + number)
        let own = try await pushSynthetic(repository: root, size: options.imageLayerSize, seed: seed)
        switch number {
        case 0:
            var children: [Descriptor] = []
            for (arch, offset) in [("amd64", 0), ("arm64", 50)] {
                let layer = try await pushSynthetic(repository: root, size: options.imageLayerSize, seed: seed + UInt64(offset) + 1)
                let digest = try await pushImage(repository: root, layers: [own, layer], tag: nil)
                let bytes = try await client.manifest(repository: root, reference: digest.string).bytes
                children.append(Descriptor(mediaType: .ociManifest, digest: digest, size: Int64(bytes.count),
                                           platform: Platform(architecture: arch, os: "linux")))
            }
            return try await putManifest(repository: root, value: ImageIndex(schemaVersion: 2, mediaType: .ociIndex, manifests: children),
                                         mediaType: .ociIndex, tag: nil)
        case 1:
            return try await pushImage(repository: root, layers: [own], tag: nil, docker: true)
        default:
            return try await pushImage(repository: root, layers: try await commonBase(in: root) + [own], tag: nil)
        }
    }

    /// A trivy database: an OCI artifact with trivy's own config and layer media types.
    func pushArtifact(repository: String, tag: String, kind: String) async throws -> Digest {
        let config = try await pushBytes(repository: repository, bytes: Array("{}".utf8),
                                         mediaType: MediaType(rawValue: "application/vnd.aquasec.trivy.config.v1+json"))
        let blob = SyntheticBlob(size: options.imageLayerSize, seed: 5000 + UInt64(kind.count))
        let layer = Descriptor(mediaType: MediaType(rawValue: "application/vnd.aquasec.trivy.\(kind).layer.v1.tar+gzip"),
                               digest: try await blob.digest(), size: options.imageLayerSize,
                               annotations: ["org.opencontainers.image.title": "\(kind).tar.gz"])
        try await client.uploadBlob(repository: repository, descriptor: layer) { blob }
        let manifest = ImageManifest(schemaVersion: 2, mediaType: .ociManifest, artifactType: nil, config: config, layers: [layer])
        return try await putManifest(repository: repository, value: manifest, mediaType: .ociManifest, tag: tag)
    }

    /// Tags `to` with a copy of the image `from` whose manifest differs (an annotation naming the
    /// tag), as a registry whose channel tags are built apart from its version tags serves them.
    func retagDistinct(repository: String, from: String, to: String) async throws {
        let manifest = try await client.manifest(repository: repository, reference: from)
        guard case var .image(image) = manifest.document else { return }
        image.annotations = (image.annotations ?? [:]).merging(["io.deckhouse.channel": to]) { _, new in new }
        _ = try await putManifest(repository: repository, value: image, mediaType: manifest.mediaType, tag: to)
    }
}
