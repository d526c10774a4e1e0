import Bundle
import Foundation
import OCI
import Streams

/// Small OCI image layouts with real layers (plain tar, gzip, zstd, built by `LayerArchive`)
/// and image configs whose `rootfs.diff_ids` match them, for `verify --deep` tests. The
/// synthetic edition's layers are random bytes labelled gzip; these decompress.
public enum DeepLayerSeeder {
    /// One layer of an image: its blob bytes, media type and the diff_id its config lists.
    public struct Layer: Sendable {
        public var bytes: [UInt8]
        public var mediaType: MediaType
        public var diffID: Digest
        public var digest: Digest { SHA256.digest(of: bytes) }

        public init(bytes: [UInt8], mediaType: MediaType, diffID: Digest) {
            self.bytes = bytes
            self.mediaType = mediaType
            self.diffID = diffID
        }

        /// A real layer holding `files`, compressed as given; its diff_id is the SHA-256 of
        /// the uncompressed tar.
        public static func real(_ files: [(path: String, contents: [UInt8])], compression: LayerCompression) throws -> Layer {
            let plain = try LayerArchive.build(files: files, compression: .none)
            let bytes = compression == .none ? plain : try LayerArchive.build(files: files, compression: compression)
            let mediaType: MediaType = switch compression {
            case .gzip: .ociLayerGzip
            case .zstd: .ociLayerZstd
            default: .ociLayer
            }
            return Layer(bytes: bytes, mediaType: mediaType, diffID: SHA256.digest(of: plain))
        }
    }

    /// One image of the layout: tagged `tag` (its short tag), with a config of `configType`.
    public struct Image: Sendable {
        public var tag: String
        public var layers: [Layer]
        public var configType: MediaType
        /// Overrides the diff_ids written into the config (default: each layer's own).
        public var diffIDs: [String]?

        public init(tag: String, layers: [Layer], configType: MediaType = .ociConfig, diffIDs: [String]? = nil) {
            self.tag = tag
            self.layers = layers
            self.configType = configType
            self.diffIDs = diffIDs
        }
    }

    /// Writes an OCI image layout (oci-layout, index.json, blobs/sha256/...) of `images`
    /// into `directory` (created), references named `<reference>:<tag>` as d8 names them.
    /// Returns each image's manifest digest, in order.
    @discardableResult
    public static func writeLayout(_ images: [Image], at directory: URL, reference: String) throws -> [Digest] {
        let blobs = directory.appendingPathComponent("blobs/sha256")
        try FileManager.default.createDirectory(at: blobs, withIntermediateDirectories: true)
        func put(_ bytes: [UInt8]) throws -> Digest {
            let digest = SHA256.digest(of: bytes)
            try Data(bytes).write(to: blobs.appendingPathComponent(digest.hex))
            return digest
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var descriptors: [Descriptor] = []
        var digests: [Digest] = []
        for image in images {
            let diffIDs = image.diffIDs ?? image.layers.map(\.diffID.string)
            let quoted = diffIDs.map { "\"\($0)\"" }.joined(separator: ",")
            let configBytes = image.configType == .ociConfig || image.configType == .dockerConfig
                ? Array("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\(quoted)]}}".utf8)
                : Array("{}".utf8)
            let config = Descriptor(mediaType: image.configType, digest: try put(configBytes), size: Int64(configBytes.count))
            var layers: [Descriptor] = []
            for layer in image.layers {
                layers.append(Descriptor(mediaType: layer.mediaType, digest: try put(layer.bytes), size: Int64(layer.bytes.count)))
            }
            let manifest = Array(try encoder.encode(ImageManifest(schemaVersion: 2, mediaType: .ociManifest, config: config, layers: layers)))
            let digest = try put(manifest)
            digests.append(digest)
            descriptors.append(Descriptor(mediaType: .ociManifest, digest: digest, size: Int64(manifest.count), annotations: [
                "org.opencontainers.image.ref.name": "\(reference):\(image.tag)",
                "io.deckhouse.image.short_tag": image.tag,
            ]))
        }
        let index = ImageIndex(schemaVersion: 2, mediaType: .ociIndex, manifests: descriptors)
        try Data(try encoder.encode(index)).write(to: directory.appendingPathComponent("index.json"))
        try Data("{\"imageLayoutVersion\":\"1.0.0\"}".utf8).write(to: directory.appendingPathComponent("oci-layout"))
        return digests
    }
}
