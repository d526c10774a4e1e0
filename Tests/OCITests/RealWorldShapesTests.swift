import Foundation
import Testing
@testable import OCI

/// Manifests of shapes registries serve today, read from testdata/manifests (see its README).
@Suite struct RealWorldShapesTests {
    @Test func buildxIndexWithAttestationsKeepsEveryChildAndPicksLinuxAmd64() throws {
        let text = Fixtures.manifestFile("oci-index-with-attestations.json")
        let document = try ManifestDocument.parse(Fixtures.bytes(text), contentType: .ociIndex)
        guard case let .index(index) = document else {
            Issue.record("expected an index")
            return
        }
        // Attestation manifests (platform unknown/unknown) are children like any other: a
        // mirror copies them, so the index stays valid in the target.
        #expect(index.manifests.count == 4)
        #expect(document.references.map(\.digest.hex) == [Fixtures.hexC, Fixtures.hexA, Fixtures.hexB, Fixtures.hexD])
        #expect(index.manifests[0].annotations?["vnd.docker.reference.type"] == "attestation-manifest")
        #expect(index.manifests[0].platform?.os == "unknown")
        // The child whose files stand for the image is linux/amd64, not the first entry.
        #expect(index.deckhousePlatformChild?.digest.hex == Fixtures.hexB)
    }

    @Test func artifactWithUnknownMediaTypesAndSubjectParses() throws {
        let text = Fixtures.manifestFile("oci-artifact-unknown-types.json")
        let document = try ManifestDocument.parse(Fixtures.bytes(text), contentType: .ociManifest)
        guard case let .image(manifest) = document else {
            Issue.record("expected an image manifest")
            return
        }
        #expect(manifest.artifactType == "application/vnd.example.sbom.v1+json")
        #expect(manifest.config.mediaType.rawValue == "application/vnd.oci.empty.v1+json")
        #expect(manifest.config.size == 2)
        #expect(manifest.layers.map(\.mediaType.rawValue) == ["application/vnd.example.sbom.layer.v1+cbor"])
        #expect(manifest.layers[0].mediaType.layerCompression == .unknown)
        #expect(manifest.subject?.digest.hex == Fixtures.hexB)
        // Config and layer are the blobs to carry; the subject is another manifest, not a blob of this one.
        #expect(document.references.map(\.digest.hex) == ["44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", Fixtures.hexA])
    }

    @Test func everyManifestFixtureEitherParsesOrIsRefusedByName() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Fixtures.manifestsFolder.path).filter { $0.hasSuffix(".json") }.sorted()
        #expect(names.count >= 8)
        for name in names {
            let bytes = Fixtures.bytes(Fixtures.manifestFile(name))
            if name.hasSuffix("-refused.json") {
                #expect(throws: OCIError.self, "\(name)") { try ManifestDocument.parse(bytes, contentType: nil) }
            } else {
                #expect(throws: Never.self, "\(name)") { try ManifestDocument.parse(bytes, contentType: nil) }
            }
        }
    }
}
