import Foundation
@testable import OCI

enum Fixtures {
    static let hexA = String(repeating: "a", count: 64)
    static let hexB = String(repeating: "b", count: 64)
    static let hexMixed = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    static let hexC = String(repeating: "c", count: 64)
    static let hexD = String(repeating: "d", count: 64)
    static let hexE = String(repeating: "e", count: 64)
    static let hexF = String(repeating: "f", count: 64)

    static func digest(_ hex: String) -> String { "sha256:\(hex)" }

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// `testdata/manifests` (see testdata/README.md).
    static let manifestsFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("testdata/manifests")

    /// `testdata/manifests/NAME`, as text.
    static func manifestFile(_ name: String) -> String {
        do {
            let text = try String(contentsOf: manifestsFolder.appendingPathComponent(name), encoding: .utf8)
            return text.hasSuffix("\n") ? String(text.dropLast()) : text
        } catch {
            fatalError("testdata/manifests/\(name) cannot be read (\(error)): the tests run from a checkout of the repository")
        }
    }

    static let ociManifest = manifestFile("oci-image-manifest.json")

    static let ociIndex = manifestFile("oci-image-index.json")

    static let dockerManifest = manifestFile("docker-schema2-manifest.json")

    static let dockerManifestList = manifestFile("docker-schema2-manifest-list.json")

    static let trivyManifest = manifestFile("trivy-db-artifact.json")

    static let schema1 = manifestFile("docker-schema1-refused.json")

    /// An image manifest without a mediaType field.
    static let bareImage = """
        {"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:\(hexA)","size":2},"layers":[]}
        """

    /// An index without a mediaType field.
    static let bareIndex = """
        {"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\(hexA)","size":10}]}
        """
}

/// Runs `body` and returns the OCIError it threw, or nil.
func ociError<T>(_ body: () throws -> T) -> OCIError? {
    do {
        _ = try body()
        return nil
    } catch let error as OCIError {
        return error
    } catch {
        return nil
    }
}
