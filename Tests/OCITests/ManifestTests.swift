import Foundation
import Testing
@testable import OCI

@Suite struct ManifestParseTests {
    func parse(_ text: String, _ contentType: MediaType? = nil) throws -> ManifestDocument {
        try ManifestDocument.parse(Fixtures.bytes(text), contentType: contentType)
    }

    @Test func ociManifest() throws {
        let document = try parse(Fixtures.ociManifest, .ociManifest)
        guard case let .image(manifest) = document else {
            Issue.record("expected an image manifest")
            return
        }
        #expect(document.mediaType == .ociManifest)
        #expect(manifest.schemaVersion == 2)
        #expect(manifest.mediaType == .ociManifest)
        #expect(manifest.config.mediaType == .ociConfig)
        #expect(manifest.config.digest.hex == Fixtures.hexA)
        #expect(manifest.config.size == 7023)
        #expect(manifest.layers.map(\.mediaType) == [.ociLayerGzip, .ociLayerZstd])
        #expect(manifest.layers.map(\.mediaType.layerCompression) == [.gzip, .zstd])
        #expect(manifest.annotations == ["com.example.key1": "value1"])
        #expect(manifest.subject == nil)
        #expect(document.references.map(\.digest.hex) == [Fixtures.hexA, Fixtures.hexB, Fixtures.hexC])
    }

    @Test func ociIndexWithPlatforms() throws {
        let document = try parse(Fixtures.ociIndex, nil)
        guard case let .index(index) = document else {
            Issue.record("expected an index")
            return
        }
        #expect(document.mediaType == .ociIndex)
        #expect(index.manifests.count == 3)
        #expect(index.manifests.map { $0.platform?.architecture } == ["ppc64le", "arm64", "amd64"])
        #expect(index.manifests[1].platform?.variant == "v8")
        #expect(index.manifests[2].platform?.osVersion == "10.0.17763.1457")
        #expect(index.manifests[2].platform?.osFeatures == ["win32k"])
        #expect(index.annotations == ["com.example.key1": "value1"])
        #expect(document.references == index.manifests)
        #expect(document.references.map(\.digest.hex) == [Fixtures.hexA, Fixtures.hexB, Fixtures.hexC])
    }

    @Test func dockerSchema2Manifest() throws {
        let document = try parse(Fixtures.dockerManifest, .dockerManifest)
        guard case let .image(manifest) = document else {
            Issue.record("expected an image manifest")
            return
        }
        #expect(document.mediaType == .dockerManifest)
        #expect(manifest.config.mediaType == .dockerConfig)
        #expect(manifest.layers.map(\.mediaType) == [.dockerLayerGzip, .dockerForeignLayerGzip])
        #expect(manifest.layers[1].urls == ["https://example.com/layer.tar.gz"])
        #expect(document.references.count == 3)
    }

    @Test func dockerManifestList() throws {
        let document = try parse(Fixtures.dockerManifestList, "application/json")
        guard case let .index(index) = document else {
            Issue.record("expected an index")
            return
        }
        #expect(document.mediaType == .dockerManifestList)
        #expect(index.manifests.allSatisfy { $0.mediaType == .dockerManifest })
        #expect(index.manifests[1].platform?.features == ["sse4"])
    }

    @Test func trivyArtifactCarriesUnknownMediaTypes() throws {
        let document = try parse(Fixtures.trivyManifest, .ociManifest)
        guard case let .image(manifest) = document else {
            Issue.record("expected an image manifest")
            return
        }
        #expect(document.mediaType == .ociManifest)
        #expect(manifest.artifactType == "application/vnd.aquasec.trivy.config.v1+json")
        #expect(manifest.config.mediaType.rawValue == "application/vnd.aquasec.trivy.config.v1+json")
        #expect(manifest.config.size == 2)
        #expect(manifest.layers.count == 1)
        #expect(manifest.layers[0].mediaType.rawValue == "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip")
        #expect(manifest.layers[0].mediaType.layerCompression == .gzip)
        #expect(manifest.layers[0].size == 61_728_914)
        #expect(manifest.layers[0].annotations == ["org.opencontainers.image.title": "db.tar.gz"])
        #expect(manifest.annotations == ["org.opencontainers.image.created": "2024-05-01T00:00:00Z"])
    }

    @Test func subjectAndEmptyConfig() throws {
        let text = """
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
             "artifactType":"application/vnd.example.sbom",
             "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:\(Fixtures.hexA)","size":2,"data":"e30="},
             "layers":[],
             "subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\(Fixtures.hexB)","size":100}}
            """
        guard case let .image(manifest) = try parse(text) else {
            Issue.record("expected an image manifest")
            return
        }
        #expect(manifest.config.mediaType == .ociEmpty)
        #expect(manifest.config.data == "e30=")
        #expect(manifest.subject?.digest.hex == Fixtures.hexB)
        #expect(manifest.layers.isEmpty)
    }

    // MARK: Kind and media type inference

    static let inference: [(body: String, contentType: MediaType?, isIndex: Bool, mediaType: MediaType)] = [
        (Fixtures.bareImage, nil, false, .ociManifest),
        (Fixtures.bareImage, "application/json", false, .ociManifest),
        (Fixtures.bareImage, "text/plain", false, .ociManifest),
        (Fixtures.bareImage, "application/octet-stream", false, .ociManifest),
        (Fixtures.bareImage, .dockerManifest, false, .dockerManifest),
        (Fixtures.bareImage, "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8", false, .dockerManifest),
        (Fixtures.bareImage, "application/vnd.oci.image.manifest.v1+json;charset=utf-8", false, .ociManifest),
        (Fixtures.bareIndex, nil, true, .ociIndex),
        (Fixtures.bareIndex, "application/json", true, .ociIndex),
        (Fixtures.bareIndex, "application/json; charset=utf-8", true, .ociIndex),
        (Fixtures.bareIndex, .dockerManifestList, true, .dockerManifestList),
        (Fixtures.bareIndex, "application/vnd.oci.image.index.v1+json; charset=utf-8", true, .ociIndex),
        // The body's mediaType wins over the announced one.
        (Fixtures.ociManifest, .ociIndex, false, .ociManifest),
        (Fixtures.ociIndex, .dockerManifest, true, .ociIndex),
        (Fixtures.dockerManifest, "application/json", false, .dockerManifest),
    ]

    @Test(arguments: inference)
    func infersKindAndMediaType(body: String, contentType: MediaType?, isIndex: Bool, mediaType: MediaType) throws {
        let document = try parse(body, contentType)
        if case .index = document {
            #expect(isIndex)
        } else {
            #expect(!isIndex)
        }
        #expect(document.mediaType == mediaType)
    }

    @Test func contentTypeDecidesKindWhenBodyHasNoMediaType() throws {
        // Both keys present: the announced type decides.
        let both = """
            {"schemaVersion":2,
             "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:\(Fixtures.hexA)","size":2},
             "layers":[],
             "manifests":[]}
            """
        if case .image = try parse(both, .ociManifest) {} else { Issue.record("expected image") }
        if case .index = try parse(both, .ociIndex) {} else { Issue.record("expected index") }
        if case .index = try parse(both, "application/json") {} else { Issue.record("expected index by keys") }
    }

    @Test func unknownBodyMediaTypeFallsBackToKeys() throws {
        let text = """
            {"schemaVersion":2,"mediaType":"application/vnd.example.custom+json",
             "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:\(Fixtures.hexA)","size":2},
             "layers":[]}
            """
        let document = try parse(text)
        if case .image = document {} else { Issue.record("expected image") }
        #expect(document.mediaType.rawValue == "application/vnd.example.custom+json")
    }

    // MARK: Rejections

    @Test(arguments: [
        (Fixtures.schema1, nil),
        (Fixtures.schema1, MediaType.dockerSchema1Signed),
        (Fixtures.schema1, MediaType("application/json")),
        (Fixtures.ociManifest, MediaType.dockerSchema1),
        (Fixtures.ociManifest, MediaType("application/vnd.docker.distribution.manifest.v1+prettyjws; charset=utf-8")),
        (#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}"#, nil),
        (#"{"schemaVersion":1}"#, nil),
    ] as [(String, MediaType?)])
    func rejectsSchema1(body: String, contentType: MediaType?) {
        let error = ociError { try parse(body, contentType) }
        #expect(error == .unsupportedSchema1)
    }

    @Test func schema1MessageSaysToRePush() {
        let message = OCIError.unsupportedSchema1.description
        #expect(message.contains("schema 1 is not supported"))
        #expect(message.contains("re-push"))
        #expect(!message.contains("\n"))
    }

    @Test func rejectsOversize() {
        let size = ManifestDocument.maxSize + 1
        var bytes = [UInt8](repeating: 0x20, count: size)
        bytes[0] = UInt8(ascii: "{")
        bytes[size - 1] = UInt8(ascii: "}")
        let error = ociError { try ManifestDocument.parse(bytes, contentType: .ociManifest) }
        #expect(error == .manifestTooLarge(size: size, limit: 4 * 1024 * 1024))
        #expect(error?.description.contains("\(size)") == true)
    }

    @Test func acceptsExactlyMaxSize() throws {
        var bytes = Fixtures.bytes(Fixtures.bareImage)
        bytes += [UInt8](repeating: 0x20, count: ManifestDocument.maxSize - bytes.count)
        #expect(bytes.count == ManifestDocument.maxSize)
        if case .image = try ManifestDocument.parse(bytes, contentType: nil) {} else { Issue.record("expected image") }
    }

    static let invalid: [(body: String, contentType: MediaType?, fragment: String)] = [
        ("", nil, "empty"),
        ("  \n", nil, "empty"),
        ("[]", nil, "not a JSON object"),
        ("[1,2,3]", .ociManifest, "not a JSON object"),
        ("\"manifest\"", nil, "not a JSON object"),
        ("42", nil, "not a JSON object"),
        ("null", nil, "not a JSON object"),
        ("{", nil, "malformed JSON"),
        (String(Fixtures.ociManifest.prefix(200)), .ociManifest, "malformed JSON"),
        ("{\"schemaVersion\":2 \"x\":1}", nil, "malformed JSON"),
        ("not json at all", "application/json", "malformed JSON"),
        ("{}", nil, "schemaVersion"),
        ("{\"schemaVersion\":3,\"manifests\":[]}", nil, "unsupported schemaVersion 3"),
        ("{\"schemaVersion\":\"2\",\"manifests\":[]}", nil, "schemaVersion"),
        ("{\"schemaVersion\":2}", nil, "no 'config' and no 'manifests'"),
        ("{\"schemaVersion\":2,\"layers\":[]}", nil, "no 'config' and no 'manifests'"),
        ("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\"}", nil,
         "index has no 'manifests'"),
        ("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":null}", nil,
         "index has no 'manifests'"),
        ("{\"schemaVersion\":2}", .ociIndex, "index has no 'manifests'"),
        ("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"}", nil,
         "image manifest has no 'config' and 'layers'"),
        ("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"layers\":[]}", nil,
         "image manifest has no 'config'"),
        ("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"sha256:\(Fixtures.hexA)\",\"size\":1}}",
         nil, "image manifest has no 'layers'"),
        ("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"a/b\",\"digest\":\"sha256:abc\",\"size\":1}]}", nil,
         "manifests[0].digest"),
        ("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"a/b\",\"digest\":\"sha256:\(Fixtures.hexA)\",\"size\":-5}]}",
         nil, "must not be negative"),
        ("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"a/b\",\"size\":1}]}", nil, "manifests[0].digest"),
        ("{\"schemaVersion\":2,\"manifests\":{}}", nil, "manifests"),
        ("{\"schemaVersion\":2,\"config\":\"x\",\"layers\":[]}", nil, "config"),
        ("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"sha256:\(Fixtures.hexA)\",\"size\":1},"
            + "\"layers\":[{\"mediaType\":\"a/b\",\"digest\":\"sha256:\(Fixtures.hexA)\",\"size\":null}]}",
         nil, "layers[0].size"),
    ]

    @Test(arguments: invalid)
    func rejectsInvalid(body: String, contentType: MediaType?, fragment: String) {
        let error = ociError { try parse(body, contentType) }
        guard case let .invalidManifest(reason)? = error else {
            Issue.record("expected invalidManifest for \(body.prefix(80).debugDescription), got \(String(describing: error))")
            return
        }
        #expect(reason.contains(fragment), "\(reason)")
        let message = error?.description ?? ""
        #expect(message.hasPrefix("invalid manifest: "))
        #expect(!message.contains("\n"))
        #expect(message.count < 400, "\(message)")
    }

    @Test func truncatedLargeJSONGivesShortMessage() {
        let layers = (0..<2000).map { _ in
            #"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:\#(Fixtures.hexB)","size":1}"#
        }.joined(separator: ",")
        let body = #"{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:\#(Fixtures.hexA)","size":1},"layers":["#
            + layers
        let error = ociError { try parse(String(body.dropLast(7)), .ociManifest) }
        guard case let .invalidManifest(reason)? = error else {
            Issue.record("expected invalidManifest, got \(String(describing: error))")
            return
        }
        #expect(reason.hasPrefix("malformed JSON"))
        #expect(reason.count < 300, "\(reason)")
    }
}
