import Bundle
import Foundation
import OCI
import Streams

/// Hand-made bundles of the shape current d8 writes (d8-current.md §2-§4), built byte by byte
/// so push and verify can be tested before pull writes them: images with real layers
/// (gzip tars holding `images_digests.json` and friends), OCI indexes, VEX attestations,
/// layouts shared by several tars, and the odd descriptors the short tag rule is about.
public enum D8Shape {
    public static let edition = "registry.deckhouse.ru/deckhouse/ee"

    public struct Image: Sendable {
        public let manifest: [UInt8]
        public let digest: Digest
        public let mediaType: MediaType
        /// Every blob the image needs: config and layers, and for an index its children's
        /// manifests and blobs.
        public let blobs: [(digest: Digest, bytes: [UInt8])]
    }

    /// One index.json descriptor; nil annotations are left out.
    public struct Ref: Sendable {
        public var refName: String?
        public var shortTag: String?
        public var image: Image
        public init(refName: String?, shortTag: String?, image: Image) {
            self.refName = refName
            self.shortTag = shortTag
            self.image = image
        }
    }

    /// An image of one gzip layer holding `files` (plus a file that makes it unique to `seed`).
    public static func image(seed: Int, files: [(path: String, contents: [UInt8])] = []) throws -> Image {
        let layer = try LayerArchive.build(files: files + [("seed/\(seed)", Array("image \(seed)\n".utf8))], compression: .gzip)
        let config = Array(#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"seed":\#(seed)}"#.utf8)
        return manifest(config: (.ociConfig, config), layers: [(.ociLayerGzip, layer)])
    }

    /// A VEX attestation as cosign stores one: a DSSE envelope layer.
    public static func attestation(of image: Image, seed: Int) -> Image {
        let envelope = Array(#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[],"for":"\#(image.digest)","seed":\#(seed)}"#.utf8)
        let config = Array(#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"seed":\#(seed)}"#.utf8)
        return manifest(config: (.ociConfig, config), layers: [(MediaType(contentType: "application/vnd.dsse.envelope.v1+json"), envelope)])
    }

    static func manifest(config: (MediaType, [UInt8]), layers: [(MediaType, [UInt8])]) -> Image {
        func descriptor(_ type: MediaType, _ bytes: [UInt8]) -> String {
            #"{"mediaType":"\#(type.rawValue)","digest":"\#(SHA256.digest(of: bytes))","size":\#(bytes.count)}"#
        }
        let text = #"{"schemaVersion":2,"mediaType":"\#(MediaType.ociManifest.rawValue)","config":\#(descriptor(config.0, config.1)),"#
            + #""layers":[\#(layers.map { descriptor($0.0, $0.1) }.joined(separator: ","))]}"#
        let bytes = Array(text.utf8)
        let blobs = [(SHA256.digest(of: config.1), config.1)] + layers.map { (SHA256.digest(of: $0.1), $0.1) }
        return Image(manifest: bytes, digest: SHA256.digest(of: bytes), mediaType: .ociManifest, blobs: blobs)
    }

    /// A multi-platform OCI index over `children`.
    public static func index(_ children: [Image]) -> Image {
        let platforms = ["amd64", "arm64", "ppc64le"]
        let items = children.enumerated().map { i, child in
            #"{"mediaType":"\#(child.mediaType.rawValue)","digest":"\#(child.digest)","size":\#(child.manifest.count),"platform":{"architecture":"\#(platforms[i % 3])","os":"linux"}}"#
        }
        let bytes = Array(#"{"schemaVersion":2,"mediaType":"\#(MediaType.ociIndex.rawValue)","manifests":[\#(items.joined(separator: ","))]}"#.utf8)
        let blobs = children.flatMap { [($0.digest, $0.manifest)] + $0.blobs }
        return Image(manifest: bytes, digest: SHA256.digest(of: bytes), mediaType: .ociIndex, blobs: blobs)
    }

    /// `repository:tag` with the tag as short tag.
    public static func tag(_ repository: String, _ tag: String, _ image: Image) -> Ref {
        Ref(refName: "\(repository):\(tag)", shortTag: tag, image: image)
    }

    /// `repository@sha256:<hex>` with the hex as short tag.
    public static func digestRef(_ repository: String, _ image: Image) -> Ref {
        Ref(refName: "\(repository)@\(image.digest)", shortTag: image.digest.hex, image: image)
    }

    /// The attestation of `image` as d8 stores it: short tag `sha256-<hex>.att`.
    public static func vex(_ repository: String, of image: Image, seed: Int) -> Ref {
        let tag = "sha256-\(image.digest.hex).att"
        return Ref(refName: "\(repository):\(tag)", shortTag: tag, image: attestation(of: image, seed: seed))
    }

    /// The entries of one OCI layout in `directory` of a tar: blobs, oci-layout, index.json
    /// (descriptors sorted by ref name, as d8 writes them).
    public static func layout(_ directory: String, _ refs: [Ref]) -> [(name: String, data: [UInt8])] {
        let prefix = directory.isEmpty ? "" : directory + "/"
        var blobs = [Digest: [UInt8]]()
        for ref in refs {
            blobs[ref.image.digest] = ref.image.manifest
            for blob in ref.image.blobs { blobs[blob.digest] = blob.bytes }
        }
        let items = refs.sorted { ($0.refName ?? "") < ($1.refName ?? "") }.map { ref -> String in
            var annotations: [String] = []
            if let tag = ref.shortTag { annotations.append(#""io.deckhouse.image.short_tag":"\#(tag)""#) }
            if let name = ref.refName { annotations.append(#""org.opencontainers.image.ref.name":"\#(name)""#) }
            return #"{"mediaType":"\#(ref.image.mediaType.rawValue)","digest":"\#(ref.image.digest)","size":\#(ref.image.manifest.count)"#
                + (annotations.isEmpty ? "" : #","annotations":{\#(annotations.joined(separator: ","))}"#) + "}"
        }
        let index = #"{"schemaVersion":2,"mediaType":"\#(MediaType.ociLayout.rawValue)","manifests":[\#(items.joined(separator: ","))]}"#
        return blobs.keys.sorted().map { ("\(prefix)blobs/sha256/\($0.hex)", blobs[$0] ?? []) }
            + [("\(prefix)oci-layout", Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8)), ("\(prefix)index.json", Array(index.utf8))]
    }

    /// Writes `entries` as a GNU tar (as d8 writes them) `name` in `directory`, whole or cut into
    /// `chunkSize`-byte chunk files.
    public static func writeTar(_ directory: URL, _ name: String, _ entries: [(name: String, data: [UInt8])], chunkSize: Int? = nil) throws {
        try RawTar.write(RawTar.tar(entries), to: directory.appendingPathComponent(name).path, chunkSize: chunkSize)
    }

    /// `images_digests.json` of `{module: {image: digest}}`.
    public static func imagesDigests(_ map: [String: [String: Digest]]) -> [UInt8] {
        let modules = map.keys.sorted().map { module in
            let images = (map[module] ?? [:]).sorted { $0.key < $1.key }.map { #""\#($0.key)":"\#($0.value)""# }
            return #""\#(module)":{\#(images.joined(separator: ","))}"#
        }
        return Array("{\(modules.joined(separator: ","))}".utf8)
    }
}
