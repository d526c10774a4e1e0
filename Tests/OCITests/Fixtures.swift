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

    static let ociManifest = """
        {
          "schemaVersion": 2,
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:\(hexA)",
            "size": 7023
          },
          "layers": [
            {
              "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
              "digest": "sha256:\(hexB)",
              "size": 32654
            },
            {
              "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
              "digest": "sha256:\(hexC)",
              "size": 16724
            }
          ],
          "annotations": { "com.example.key1": "value1" }
        }
        """

    static let ociIndex = """
        {
          "schemaVersion": 2,
          "mediaType": "application/vnd.oci.image.index.v1+json",
          "manifests": [
            {
              "mediaType": "application/vnd.oci.image.manifest.v1+json",
              "size": 7143,
              "digest": "sha256:\(hexA)",
              "platform": { "architecture": "ppc64le", "os": "linux" }
            },
            {
              "mediaType": "application/vnd.oci.image.manifest.v1+json",
              "size": 7682,
              "digest": "sha256:\(hexB)",
              "platform": { "architecture": "arm64", "os": "linux", "variant": "v8" }
            },
            {
              "mediaType": "application/vnd.oci.image.manifest.v1+json",
              "size": 1234,
              "digest": "sha256:\(hexC)",
              "platform": {
                "architecture": "amd64", "os": "windows",
                "os.version": "10.0.17763.1457", "os.features": ["win32k"]
              }
            }
          ],
          "annotations": { "com.example.key1": "value1" }
        }
        """

    static let dockerManifest = """
        {
           "schemaVersion": 2,
           "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
           "config": {
              "mediaType": "application/vnd.docker.container.image.v1+json",
              "size": 7023,
              "digest": "sha256:\(hexA)"
           },
           "layers": [
              {
                 "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                 "size": 32654,
                 "digest": "sha256:\(hexB)"
              },
              {
                 "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                 "size": 73109,
                 "digest": "sha256:\(hexC)",
                 "urls": ["https://example.com/layer.tar.gz"]
              }
           ]
        }
        """

    static let dockerManifestList = """
        {
          "schemaVersion": 2,
          "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
          "manifests": [
            {
              "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
              "size": 7143,
              "digest": "sha256:\(hexA)",
              "platform": { "architecture": "ppc64le", "os": "linux" }
            },
            {
              "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
              "size": 7682,
              "digest": "sha256:\(hexB)",
              "platform": { "architecture": "amd64", "os": "linux", "features": ["sse4"] }
            }
          ]
        }
        """

    static let trivyManifest = """
        {
          "schemaVersion": 2,
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "artifactType": "application/vnd.aquasec.trivy.config.v1+json",
          "config": {
            "mediaType": "application/vnd.aquasec.trivy.config.v1+json",
            "digest": "sha256:\(hexA)",
            "size": 2
          },
          "layers": [
            {
              "mediaType": "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip",
              "digest": "sha256:\(hexB)",
              "size": 61728914,
              "annotations": { "org.opencontainers.image.title": "db.tar.gz" }
            }
          ],
          "annotations": { "org.opencontainers.image.created": "2024-05-01T00:00:00Z" }
        }
        """

    static let schema1 = """
        {
           "name": "hello-world",
           "tag": "latest",
           "architecture": "amd64",
           "fsLayers": [ { "blobSum": "sha256:\(hexA)" } ],
           "history": [],
           "schemaVersion": 1,
           "signatures": []
        }
        """

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
