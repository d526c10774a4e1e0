import Bundle
import Foundation
import OCI
import Streams
import TestSupport

/// Fixture bundles of every generation for the BundleIndex tests: small OCI layouts whose
/// blobs are named by their real sha256 (an image manifest referencing a config and a
/// layer), index.json with the d8 annotations.
enum BundleIndexFixtures {
    static let edition = "registry.deckhouse.ru/deckhouse/ee"

    struct Image {
        let manifest: [UInt8]
        let digest: Digest
        /// Config, then layer.
        let blobs: [(digest: Digest, bytes: [UInt8])]
        /// Manifest, config, layer.
        var all: [(digest: Digest, bytes: [UInt8])] { [(digest, manifest)] + blobs }
    }

    struct Ref {
        let refName: String
        let shortTag: String
        let image: Image
    }

    /// An image: a JSON config and a pseudo-random layer of `layerSize` bytes.
    static func image(_ seed: Int, layerSize: Int = 700) -> Image {
        let config = Array(
            #"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"seed":\#(seed)}"#.utf8)
        let layer = TarTestTools.bytes(layerSize, seed: UInt64(seed) &* 7919 &+ 1)
        let configDigest = SHA256.digest(of: config)
        let layerDigest = SHA256.digest(of: layer)
        let manifest = Array((
            #"{"schemaVersion":2,"mediaType":"\#(MediaType.ociManifest.rawValue)","#
            + #""config":{"mediaType":"\#(MediaType.ociConfig.rawValue)","digest":"\#(configDigest)","size":\#(config.count)},"#
            + #""layers":[{"mediaType":"\#(MediaType.ociLayerGzip.rawValue)","digest":"\#(layerDigest)","size":\#(layer.count)}]}"#
        ).utf8)
        return Image(
            manifest: manifest, digest: SHA256.digest(of: manifest),
            blobs: [(configDigest, config), (layerDigest, layer)])
    }

    /// A tag reference `<repository>:<tag>`.
    static func tag(_ repository: String, _ tag: String, _ image: Image) -> Ref {
        Ref(refName: "\(repository):\(tag)", shortTag: tag, image: image)
    }

    /// A digest reference `<repository>@sha256:<hex>` with the hex as short tag.
    static func digestRef(_ repository: String, _ image: Image) -> Ref {
        Ref(refName: "\(repository)@\(image.digest)", shortTag: image.digest.hex, image: image)
    }

    /// index.json as d8 writes it: one descriptor per reference sorted by ref name.
    /// `mediaType` nil leaves the field out.
    static func indexJSON(_ refs: [Ref], mediaType: String? = MediaType.ociLayout.rawValue) -> [UInt8] {
        let items = refs.sorted { $0.refName < $1.refName }.map { ref in
            #"{"mediaType":"\#(MediaType.ociManifest.rawValue)","digest":"\#(ref.image.digest)","size":\#(ref.image.manifest.count),"#
                + #""annotations":{"io.deckhouse.image.short_tag":"\#(ref.shortTag)","org.opencontainers.image.ref.name":"\#(ref.refName)"}}"#
        }
        let type = mediaType.map { #""mediaType":"\#($0)","# } ?? ""
        return Array(#"{"schemaVersion":2,\#(type)"manifests":[\#(items.joined(separator: ","))]}"#.utf8)
    }

    static let ociLayout = Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8)

    /// The entries of one layout in directory `directory` of a tar ("" for the tar root):
    /// blobs by digest, then oci-layout and index.json (the order dkp-mirror and d8 use).
    static func layout(
        _ directory: String, _ refs: [Ref], mediaType: String? = MediaType.ociLayout.rawValue
    ) -> [(name: String, data: [UInt8])] {
        let prefix = directory.isEmpty ? "" : directory + "/"
        var blobs = [Digest: [UInt8]]()
        for ref in refs { for blob in ref.image.all { blobs[blob.digest] = blob.bytes } }
        var entries = blobs.keys.sorted().map { ("\(prefix)blobs/sha256/\($0.hex)", blobs[$0] ?? []) }
        entries.append(("\(prefix)oci-layout", ociLayout))
        entries.append(("\(prefix)index.json", indexJSON(refs, mediaType: mediaType)))
        return entries
    }

    static func join(_ root: String, _ path: String) -> String {
        root.isEmpty ? path : (path.isEmpty ? root : root + "/" + path)
    }

    // MARK: - the parts of an edition

    /// platform.tar: the root layout (a version tag and a digest reference), install/,
    /// release-channel/ (a version and a channel alias of the same image).
    static func platform(root: String = "", mediaType: String? = MediaType.ociLayout.rawValue, layerSize: Int = 2600)
        -> [(name: String, data: [UInt8])]
    {
        let controller = image(1, layerSize: layerSize)
        let moduleImage = image(2, layerSize: layerSize)
        let installer = image(3)
        let channel = image(4, layerSize: 100)
        return layout(join(root, ""), [tag(edition, "v1.69.3", controller), digestRef(edition, moduleImage)], mediaType: mediaType)
            + layout(join(root, "install"), [tag(edition + "/install", "v1.69.3", installer)], mediaType: mediaType)
            + layout(
                join(root, "release-channel"),
                [tag(edition + "/release-channel", "v1.69.3", channel), tag(edition + "/release-channel", "stable", channel)],
                mediaType: mediaType)
    }

    /// A module's layouts in `root` (`modules/<name>` now, "" in older module tars): the
    /// module image, its release channel, an extra image.
    static func module(_ name: String, root: String, mediaType: String? = MediaType.ociLayout.rawValue)
        -> [(name: String, data: [UInt8])]
    {
        let repository = "\(edition)/modules/\(name)"
        let seed = 100 + name.unicodeScalars.reduce(0) { $0 * 31 + Int($1.value) } % 1000
        let moduleImage = image(seed, layerSize: 1800)
        let release = image(seed + 1, layerSize: 60)
        let extra = image(seed + 2)
        return layout(root, [tag(repository, "v1.2.3", moduleImage), digestRef(repository, image(seed + 3))], mediaType: mediaType)
            + layout(join(root, "release"), [tag(repository + "/release", "v1.2.3", release),
                                             tag(repository + "/release", "stable", release)], mediaType: mediaType)
            + layout(join(root, "extra/y"), [tag(repository + "/extra/y", "1.0", extra)], mediaType: mediaType)
    }

    /// security.tar's layouts in `root` (`security` now, "" in older security tars).
    static func security(root: String) -> [(name: String, data: [UInt8])] {
        layout(join(root, "trivy-db"), [tag(edition + "/security/trivy-db", "2", image(500, layerSize: 3100))])
            + layout(join(root, "trivy-bdu"), [tag(edition + "/security/trivy-bdu", "1", image(501))])
    }

    // MARK: - writing bundles

    /// Writes `entries` as a GNU tar (the bytes d8 writes) called `name` in `directory`,
    /// whole or cut into chunk files of `chunkSize` bytes. Returns the tar bytes.
    @discardableResult
    static func writeTar(
        _ directory: String, _ name: String, _ entries: [(name: String, data: [UInt8])], chunkSize: Int? = nil
    ) throws -> [UInt8] {
        let tar = TarTestTools.sequentialTar(entries)
        try RawTar.write(tar, to: directory + "/" + name, chunkSize: chunkSize)
        return tar
    }

    /// Writes `entries` as files under `root` (to pack with GNU tar).
    static func writeTree(_ root: String, _ entries: [(name: String, data: [UInt8])]) throws {
        for entry in entries {
            let path = root + "/" + entry.name
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try TarTestTools.write(path, entry.data)
        }
    }

    /// `tar --format=gnu -cf <tar> -C <tree> .`: names start with "./" and directories
    /// have their own entries, as older d8 bundles have.
    static func gnuTar(_ tar: String, tree: String) async throws {
        let result = try await TestProcess.run("tar", ["--format=gnu", "-cf", tar, "-C", tree, "."])
        guard result.succeeded else { throw TestSupportError("tar failed: \(result.stderrString)") }
    }

    /// A current-generation bundle: platform.tar, module-x.tar, module-console.tar,
    /// security.tar, with the companions d8 and dkp-mirror put beside them.
    static func currentBundle(_ directory: String, chunkSize: Int? = nil) throws {
        try writeTar(directory, "platform.tar", platform(), chunkSize: chunkSize)
        try writeTar(directory, "module-x.tar", module("x", root: "modules/x"), chunkSize: chunkSize)
        try writeTar(directory, "module-console.tar", module("console", root: "modules/console"), chunkSize: chunkSize)
        try writeTar(directory, "security.tar", security(root: "security"), chunkSize: chunkSize)
        try TarTestTools.write(directory + "/SHA256SUMS", Array("0000  platform.tar\n".utf8))
        try TarTestTools.write(directory + "/platform.tar.gostsum", Array("abcd".utf8))
        try TarTestTools.write(directory + "/deckhousereleases.yaml", Array("apiVersion: v1\n".utf8))
        try FileManager.default.createDirectory(atPath: directory + "/.dkp-mirror", withIntermediateDirectories: true)
        try TarTestTools.write(directory + "/.dkp-mirror/state.json", Array("{}".utf8))
    }

    /// The layout paths of `currentBundle`.
    static let currentPaths = [
        "", "install", "modules/console", "modules/console/extra/y", "modules/console/release",
        "modules/x", "modules/x/extra/y", "modules/x/release", "release-channel",
        "security/trivy-bdu", "security/trivy-db",
    ]
}
