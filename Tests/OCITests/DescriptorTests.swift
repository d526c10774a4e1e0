import Foundation
import Testing
@testable import OCI

@Suite struct DescriptorTests {
    func decode(_ json: String) throws -> Descriptor {
        try JSONDecoder().decode(Descriptor.self, from: Data(json.utf8))
    }

    func object(_ value: some Encodable) throws -> [String: Any] {
        let data = try JSONEncoder().encode(value)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// A bundle's index.json repeats the same media types and annotation keys on every
    /// descriptor: they decode to shared strings, with every value kept as written.
    @Test func commonMediaTypesAndAnnotationKeysDecodeUnchanged() throws {
        let descriptor = try decode("""
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\(Fixtures.hexA)","size":1,
             "annotations":{"org.opencontainers.image.ref.name":"r.example/e:v1","io.deckhouse.image.short_tag":"v1","k":"v"}}
            """)
        #expect(descriptor.mediaType == .ociManifest)
        #expect(descriptor.annotations == ["org.opencontainers.image.ref.name": "r.example/e:v1", "io.deckhouse.image.short_tag": "v1", "k": "v"])
        let unusual = try decode(#"{"mediaType":"application/x-other","digest":"sha256:\#(Fixtures.hexA)","size":1,"annotations":{"k":"v"}}"#)
        #expect(unusual.mediaType.rawValue == "application/x-other")
        #expect(unusual.annotations == ["k": "v"])
        #expect(MediaType.interned("application/vnd.oci.image.layer.v1.tar+gzip") == MediaType.ociLayerGzip.rawValue)
    }

    @Test func decodesAllFields() throws {
        let descriptor = try decode("""
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\(Fixtures.hexA)","size":7143,
             "urls":["https://example.com/a"],"annotations":{"k":"v"},
             "platform":{"architecture":"arm64","os":"linux","variant":"v8"},
             "artifactType":"application/vnd.example+type","data":"e30="}
            """)
        #expect(descriptor.mediaType == .ociManifest)
        #expect(descriptor.digest.hex == Fixtures.hexA)
        #expect(descriptor.size == 7143)
        #expect(descriptor.urls == ["https://example.com/a"])
        #expect(descriptor.annotations == ["k": "v"])
        #expect(descriptor.platform == Platform(architecture: "arm64", os: "linux", variant: "v8"))
        #expect(descriptor.artifactType == "application/vnd.example+type")
        #expect(descriptor.data == "e30=")
    }

    @Test func decodesMinimalAndLargeSize() throws {
        let descriptor = try decode(#"{"mediaType":"x/y","digest":"sha256:\#(Fixtures.hexA)","size":0}"#)
        #expect(descriptor.size == 0)
        #expect(descriptor.urls == nil && descriptor.annotations == nil && descriptor.platform == nil)
        #expect(descriptor.artifactType == nil && descriptor.data == nil)
        let big = try decode(#"{"mediaType":"x/y","digest":"sha256:\#(Fixtures.hexA)","size":10737418240}"#)
        #expect(big.size == 10_737_418_240)
    }

    @Test(arguments: ["-1", "-9223372036854775808"])
    func rejectsNegativeSize(size: String) {
        do {
            _ = try decode(#"{"mediaType":"x/y","digest":"sha256:\#(Fixtures.hexA)","size":\#(size)}"#)
            Issue.record("decoded a negative size")
        } catch let DecodingError.dataCorrupted(context) {
            #expect(context.debugDescription.contains("must not be negative"))
            #expect(context.codingPath.last?.stringValue == "size")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test(arguments: [
        #"{"digest":"sha256:\#(Fixtures.hexA)","size":1}"#,
        #"{"mediaType":"x/y","size":1}"#,
        #"{"mediaType":"x/y","digest":"sha256:\#(Fixtures.hexA)"}"#,
        #"{"mediaType":"x/y","digest":"sha256:abc","size":1}"#,
        #"{"mediaType":"x/y","digest":"sha256:\#(Fixtures.hexA)","size":"1"}"#,
        #"{"mediaType":"x/y","digest":"sha256:\#(Fixtures.hexA)","size":1.5}"#,
    ])
    func rejectsMissingOrBadFields(json: String) {
        #expect(throws: DecodingError.self) { try decode(json) }
    }

    @Test func encodingOmitsNilKeys() throws {
        let descriptor = Descriptor(mediaType: .ociLayerGzip, digest: try Digest(sha256Hex: Fixtures.hexB), size: 42)
        let json = try object(descriptor)
        #expect(Set(json.keys) == ["mediaType", "digest", "size"])
        #expect(json["digest"] as? String == "sha256:\(Fixtures.hexB)")
        #expect((json["size"] as? NSNumber)?.int64Value == 42)
    }

    @Test func roundTrip() throws {
        let descriptor = Descriptor(
            mediaType: "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip",
            digest: try Digest(sha256Hex: Fixtures.hexC),
            size: 61_728_914,
            urls: ["https://a", "https://b"],
            annotations: ["org.opencontainers.image.title": "db.tar.gz"],
            platform: Platform(architecture: "amd64", os: "windows", osVersion: "10.0", osFeatures: ["win32k"]),
            artifactType: "application/vnd.example",
            data: "AAAA")
        let decoded = try JSONDecoder().decode(Descriptor.self, from: JSONEncoder().encode(descriptor))
        #expect(decoded == descriptor)
        #expect(Set(try object(descriptor).keys)
            == ["mediaType", "digest", "size", "urls", "annotations", "platform", "artifactType", "data"])
    }
}

@Suite struct PlatformTests {
    @Test func decodesDottedKeys() throws {
        let platform = try JSONDecoder().decode(Platform.self, from: Data("""
            {"architecture":"amd64","os":"windows","os.version":"10.0.17763.1457",
             "os.features":["win32k"],"variant":"v1","features":["sse4"]}
            """.utf8))
        #expect(platform.architecture == "amd64")
        #expect(platform.os == "windows")
        #expect(platform.osVersion == "10.0.17763.1457")
        #expect(platform.osFeatures == ["win32k"])
        #expect(platform.variant == "v1")
        #expect(platform.features == ["sse4"])
    }

    @Test func camelCaseKeysAreNotUsed() throws {
        let platform = try JSONDecoder().decode(Platform.self, from: Data(
            #"{"architecture":"amd64","os":"windows","osVersion":"10.0"}"#.utf8))
        #expect(platform.osVersion == nil)
    }

    @Test func encodesDottedKeysAndOmitsNil() throws {
        let minimal = try JSONSerialization.jsonObject(
            with: JSONEncoder().encode(Platform(architecture: "arm64", os: "linux"))) as? [String: Any]
        #expect(minimal.map { Set($0.keys) } == ["architecture", "os"])

        let full = Platform(architecture: "amd64", os: "windows", variant: "v2", osVersion: "10.0",
                            osFeatures: ["win32k"], features: ["f"])
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(full)) as? [String: Any]
        #expect(json.map { Set($0.keys) } == ["architecture", "os", "variant", "os.version", "os.features", "features"])
        #expect(try JSONDecoder().decode(Platform.self, from: JSONEncoder().encode(full)) == full)
    }

    @Test(arguments: [#"{"os":"linux"}"#, #"{"architecture":"amd64"}"#, #"[]"#])
    func requiresArchitectureAndOS(json: String) {
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Platform.self, from: Data(json.utf8))
        }
    }
}
