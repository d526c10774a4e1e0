import Bundle
import OCI
import Streams

extension TestdataBundles {
    /// A manifest (or index) and every blob it needs.
    struct Image {
        let manifest: [UInt8]
        let mediaType: MediaType
        let digest: Digest
        let blobs: [(digest: Digest, bytes: [UInt8])]
    }

    /// One index.json descriptor: the tag push gives it and the image.
    struct Ref {
        let tag: String
        let image: Image
    }

    /// One layout: its path below the edition ("" for the root) and its references.
    struct Layout {
        let path: String
        let refs: [Ref]
    }

    /// The tiny edition: the controller image of v1.69.3 and two platform images by digest,
    /// the installer (an index of two platforms), the release channel image under its version
    /// and the five channel names, the console module with its release image on `stable`,
    /// and the trivy-db artifact. Every image shares one base layer, so push mounts or skips it.
    struct Content {
        let layouts: [Layout]

        init() {
            let base = TestdataBundles.layer(["etc/os-release": "NAME=dkp-testdata\nVERSION_ID=1\n"])
            func image(_ files: [String: String], architecture: String = "amd64") -> Image {
                TestdataBundles.image(layers: [base, TestdataBundles.layer(files)], architecture: architecture)
            }
            let controller = image(["deckhouse/version": version, "deckhouse/edition": "EE"])
            let platformImages = (1...2).map { image(["usr/bin/component-\($0)": "component \($0)\n"]) }
            let installer = TestdataBundles.index([(image(["install/version": version]), "amd64"),
                                                   (image(["install/version": version], architecture: "arm64"), "arm64")])
            let channel = image(["version.json": #"{"version":"\#(version)"}"#])
            let module = image(["modules/console/version": "v1.2.3"])
            let moduleRelease = image(["version.json": #"{"version":"v1.2.3"}"#])
            let channels = ["alpha", "beta", "early-access", "stable", "rock-solid"]
            layouts = [
                Layout(path: "", refs: [Ref(tag: version, image: controller)] + platformImages.map { Ref(tag: $0.digest.hex, image: $0) }),
                Layout(path: "install", refs: [Ref(tag: version, image: installer)]),
                Layout(path: "release-channel", refs: ([version] + channels).map { Ref(tag: $0, image: channel) }),
                Layout(path: "modules/console", refs: [Ref(tag: "v1.2.3", image: module)]),
                Layout(path: "modules/console/release", refs: [Ref(tag: "v1.2.3", image: moduleRelease),
                                                               Ref(tag: "stable", image: moduleRelease)]),
                Layout(path: "security/trivy-db", refs: [Ref(tag: "2", image: TestdataBundles.trivyDB())]),
            ]
        }

        /// platform.tar's layouts (the root, `install`, `release-channel`) under `root`.
        func platform(root: String) -> [RawTar.Entry] {
            entries(of: ["", "install", "release-channel"], from: "", under: root)
        }

        /// The console module's layouts under `root` (`modules/console` now, "" in older tars).
        func module(root: String) -> [RawTar.Entry] {
            entries(of: ["modules/console", "modules/console/release"], from: "modules/console", under: root)
        }

        /// security.tar's layout under `root` (`security` now, "" in older tars).
        func security(root: String) -> [RawTar.Entry] {
            entries(of: ["security/trivy-db"], from: "security", under: root)
        }

        /// The entries of the layouts at `paths`, each moved from below `from` to below `root`:
        /// blobs in digest order, then `oci-layout`, then `index.json`.
        func entries(of paths: [String], from: String, under root: String) -> [RawTar.Entry] {
            var out: [RawTar.Entry] = []
            for layout in layouts where paths.contains(layout.path) {
                let rest = from.isEmpty ? layout.path : String(layout.path.dropFirst(from.count).trimmingPrefix("/"))
                let directory = [root, String(rest)].filter { !$0.isEmpty }.joined(separator: "/")
                let prefix = directory.isEmpty ? "" : directory + "/"
                var blobs: [Digest: [UInt8]] = [:]
                for ref in layout.refs {
                    blobs[ref.image.digest] = ref.image.manifest
                    for blob in ref.image.blobs { blobs[blob.digest] = blob.bytes }
                }
                out += blobs.keys.sorted().map { (LayoutWriter.blobEntry(prefix: prefix, digest: $0), blobs[$0] ?? []) }
                out.append((prefix + "oci-layout", LayoutWriter.ociLayout))
                out.append((prefix + "index.json", indexJSON(layout)))
            }
            return out
        }

        /// index.json as LayoutWriter writes it, ref names as d8 gives them.
        func indexJSON(_ layout: Layout) -> [UInt8] {
            let repository = layout.path.isEmpty ? edition : "\(edition)/\(layout.path)"
            let names = layout.refs.map { ref in
                ref.tag == ref.image.digest.hex ? "\(repository)@\(ref.image.digest)" : "\(repository):\(ref.tag)"
            }
            var out: [UInt8] = []
            // Writing into an array cannot fail.
            try? LayoutWriter.writeIndexJSON(refNames: names, reference: { i in
                let ref = layout.refs[i]
                return LayoutWriter.Reference(mediaType: ref.image.mediaType, digest: ref.image.digest,
                                              size: Int64(ref.image.manifest.count), shortTag: ref.tag)
            }, to: { out += $0 })
            return out
        }
    }

    /// An uncompressed tar layer of `files` (path -> text), in path order.
    static func layer(_ files: [String: String]) -> [UInt8] {
        RawTar.tar(files.keys.sorted().map { ($0, Array((files[$0] ?? "").utf8)) })
    }

    /// An OCI image of uncompressed `layers`; its config lists them as its diff IDs.
    static func image(layers: [[UInt8]], architecture: String) -> Image {
        let digests = layers.map { SHA256.digest(of: $0) }
        let diffIDs = digests.map { "\"\($0)\"" }.joined(separator: ",")
        let config = Array(#"{"architecture":"\#(architecture)","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[\#(diffIDs)]}}"#.utf8)
        let layerDescriptors = zip(layers, digests).map { descriptor(.ociLayer, $1, $0.count) }
        return manifest(config: (.ociConfig, config), layers: layerDescriptors, blobs: zip(digests, layers).map { ($0, $1) })
    }

    /// The trivy-db artifact: Aquasec's own config and layer media types.
    static func trivyDB() -> Image {
        let config = Array("{}".utf8)
        let database = Array("trivy database of the testdata edition\n".utf8)
        return manifest(config: (MediaType(rawValue: "application/vnd.aquasec.trivy.config.v1+json"), config),
                        layers: [descriptor(MediaType(rawValue: "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"),
                                            SHA256.digest(of: database), database.count)],
                        blobs: [(SHA256.digest(of: database), database)])
    }

    static func descriptor(_ type: MediaType, _ digest: Digest, _ size: Int) -> String {
        #"{"mediaType":"\#(type.rawValue)","digest":"\#(digest)","size":\#(size)}"#
    }

    static func manifest(config: (MediaType, [UInt8]), layers: [String], blobs: [(Digest, [UInt8])]) -> Image {
        let configDigest = SHA256.digest(of: config.1)
        let text = #"{"schemaVersion":2,"mediaType":"\#(MediaType.ociManifest.rawValue)","config":\#(descriptor(config.0, configDigest, config.1.count)),"#
            + #""layers":[\#(layers.joined(separator: ","))]}"#
        let bytes = Array(text.utf8)
        return Image(manifest: bytes, mediaType: .ociManifest, digest: SHA256.digest(of: bytes),
                     blobs: [(configDigest, config.1)] + blobs.map { (digest: $0.0, bytes: $0.1) })
    }

    /// An OCI index of linux `children`, each with its architecture.
    static func index(_ children: [(image: Image, architecture: String)]) -> Image {
        let items = children.map { child, architecture in
            #"{"mediaType":"\#(child.mediaType.rawValue)","digest":"\#(child.digest)","size":\#(child.manifest.count),"#
                + #""platform":{"architecture":"\#(architecture)","os":"linux"}}"#
        }
        let bytes = Array(#"{"schemaVersion":2,"mediaType":"\#(MediaType.ociIndex.rawValue)","manifests":[\#(items.joined(separator: ","))]}"#.utf8)
        return Image(manifest: bytes, mediaType: .ociIndex, digest: SHA256.digest(of: bytes),
                     blobs: children.flatMap { [(digest: $0.image.digest, bytes: $0.image.manifest)] + $0.image.blobs })
    }
}
