import Foundation
import Testing
@testable import OCI

@Suite struct MediaTypeTests {
    @Test func constants() {
        let table: [(MediaType, String)] = [
            (.ociManifest, "application/vnd.oci.image.manifest.v1+json"),
            (.ociIndex, "application/vnd.oci.image.index.v1+json"),
            (.dockerManifest, "application/vnd.docker.distribution.manifest.v2+json"),
            (.dockerManifestList, "application/vnd.docker.distribution.manifest.list.v2+json"),
            (.dockerSchema1, "application/vnd.docker.distribution.manifest.v1+json"),
            (.dockerSchema1Signed, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
            (.ociConfig, "application/vnd.oci.image.config.v1+json"),
            (.dockerConfig, "application/vnd.docker.container.image.v1+json"),
            (.ociLayer, "application/vnd.oci.image.layer.v1.tar"),
            (.ociLayerGzip, "application/vnd.oci.image.layer.v1.tar+gzip"),
            (.ociLayerZstd, "application/vnd.oci.image.layer.v1.tar+zstd"),
            (.dockerLayerGzip, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
            (.dockerForeignLayerGzip, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            (.ociEmpty, "application/vnd.oci.empty.v1+json"),
            (.ociLayout, "application/vnd.oci.image.layout.v1+json"),
        ]
        for (type, raw) in table {
            #expect(type.rawValue == raw)
            #expect(type.description == raw)
            #expect(MediaType(rawValue: raw) == type)
        }
    }

    static let classification: [(type: MediaType, index: Bool, image: Bool, schema1: Bool)] = [
        (.ociIndex, true, false, false),
        (.dockerManifestList, true, false, false),
        (.ociManifest, false, true, false),
        (.dockerManifest, false, true, false),
        (.dockerSchema1, false, false, true),
        (.dockerSchema1Signed, false, false, true),
        (.ociConfig, false, false, false),
        (.ociLayerGzip, false, false, false),
        ("application/json", false, false, false),
        ("application/vnd.oci.image.index.v1+json; charset=utf-8", true, false, false),
        ("Application/VND.OCI.Image.Manifest.v1+JSON", false, true, false),
        ("application/vnd.oci.artifact.manifest.v1+json", false, false, false),
        ("", false, false, false),
    ]

    @Test(arguments: classification)
    func classifies(type: MediaType, index: Bool, image: Bool, schema1: Bool) {
        #expect(type.isIndex == index)
        #expect(type.isImageManifest == image)
        #expect(type.isManifest == (index || image))
        #expect(type.isSchema1 == schema1)
    }

    @Test func manifestAcceptTypes() {
        #expect(MediaType.manifestAcceptTypes == [.ociIndex, .ociManifest, .dockerManifestList, .dockerManifest])
        #expect(MediaType.manifestAcceptTypes.allSatisfy { $0.isManifest })
    }

    static let compression: [(MediaType, LayerCompression)] = [
        (.ociLayer, .none),
        (.ociLayerGzip, .gzip),
        (.ociLayerZstd, .zstd),
        (.dockerLayerGzip, .gzip),
        (.dockerForeignLayerGzip, .gzip),
        ("application/vnd.docker.image.rootfs.diff.tar", .none),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", .gzip),
        ("application/vnd.aquasec.trivy.db.layer.v1.tar+gzip", .gzip),
        ("application/vnd.example.layer.tar.zstd", .zstd),
        ("application/vnd.oci.image.layer.v1.tar+gzip; foo=bar", .gzip),
        (.ociConfig, .unknown),
        (.ociEmpty, .unknown),
        ("application/vnd.aquasec.trivy.config.v1+json", .unknown),
        ("application/octet-stream", .unknown),
        ("", .unknown),
    ]

    @Test(arguments: compression)
    func layerCompression(type: MediaType, expected: LayerCompression) {
        #expect(type.layerCompression == expected)
    }

    static let contentTypes: [(String, String)] = [
        ("application/json; charset=utf-8", "application/json"),
        ("  application/vnd.oci.image.index.v1+json  ", "application/vnd.oci.image.index.v1+json"),
        ("application/vnd.docker.distribution.manifest.v2+json;charset=utf-8",
         "application/vnd.docker.distribution.manifest.v2+json"),
        ("Application/VND.OCI.Image.Manifest.v1+JSON", "application/vnd.oci.image.manifest.v1+json"),
        ("text/plain ;", "text/plain"),
        ("", ""),
        (";", ""),
    ]

    @Test(arguments: contentTypes)
    func contentTypeStripsParameters(header: String, expected: String) {
        #expect(MediaType(contentType: header).rawValue == expected)
    }

    @Test func unknownValuesAreCarried() throws {
        let custom: MediaType = "application/vnd.aquasec.trivy.config.v1+json"
        #expect(custom.rawValue == "application/vnd.aquasec.trivy.config.v1+json")
        #expect(!custom.isManifest)
        let decoded = try JSONDecoder().decode([MediaType].self, from: Data(#"["x/y","",  "application/vnd.oci.image.index.v1+json"]"#.utf8))
        #expect(decoded == ["x/y", "", .ociIndex])
    }

    @Test func codableAsSingleString() throws {
        let encoded = try JSONEncoder().encode(["t": MediaType.ociLayerGzip])
        #expect(String(decoding: encoded, as: UTF8.self) == #"{"t":"application\/vnd.oci.image.layer.v1.tar+gzip"}"#
            || String(decoding: encoded, as: UTF8.self) == #"{"t":"application/vnd.oci.image.layer.v1.tar+gzip"}"#)
        #expect(try JSONDecoder().decode([String: MediaType].self, from: encoded) == ["t": .ociLayerGzip])
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(MediaType.self, from: Data("42".utf8))
        }
    }
}
