import Foundation
import NIOHTTP1
import OCI
import Streams

extension RegistryClient {
    static let manifestAccept: HTTPHeaders = ["Accept": MediaType.manifestAcceptTypes.map(\.rawValue).joined(separator: ", ")]

    /// `manifest HOST/REPO:TAG` or `manifest HOST/REPO@DIGEST`, for errors.
    func manifestName(_ repository: String, _ reference: String) -> String {
        "manifest \(host)/\(repository)\(reference.hasPrefix("sha256:") ? "@" : ":")\(reference)"
    }

    /// Fetches a manifest or index by tag or digest, with every manifest media type accepted.
    /// The digest is checked against a digest reference. For a tag, a `Docker-Content-Digest`
    /// that differs from the bytes' hash is only reported: registries and mirrors get that
    /// header wrong often enough (distribution#2395) that Go's clients, d8's among them, do not
    /// check it; the bytes, which the bundle stores, are what the digest is taken from.
    public func manifest(repository: String, reference: String) async throws -> FetchedManifest {
        let what = manifestName(repository, reference)
        let (response, body) = try await transport.execute(
            RegistryOperation(.GET, url(repository, "manifests", reference), headers: Self.manifestAccept,
                              scopes: [.pull(repository)], expecting: [200], what: what, repository: repository, action: "pull"),
            collectingUpTo: ManifestDocument.maxSize)
        let bytes = Array(body.readableBytesView)
        let digest = SHA256.digest(of: bytes)
        if let expected = try? Digest(parsing: reference) {
            if expected != digest { throw RegistryError.digestMismatch(what: what, expected: expected, actual: digest) }
        } else if let announced = response.contentDigest, announced != digest {
            configuration.logger.warning("\(what): the registry announces \(announced), the bytes it sent hash to \(digest); using the bytes' digest")
        }
        let contentType = response.header("Content-Type").map(MediaType.init(contentType:))
        let document: ManifestDocument
        do {
            document = try ManifestDocument.parse(bytes, contentType: contentType)
        } catch {
            throw RegistryError.invalidResponse(what: what, detail: "\(error)")
        }
        return FetchedManifest(bytes: bytes, mediaType: document.mediaType, digest: digest, document: document)
    }

    /// `HEAD` of a manifest: its descriptor, or nil when the registry does not have it. A
    /// registry or proxy that does not take HEAD there (405, 501) is asked with GET,
    /// from then on for every manifest.
    public func manifestDescriptor(repository: String, reference: String) async throws -> Descriptor? {
        if transport.manifestHeadUnsupported.withLockedValue({ $0 }) {
            return try await manifestByGET(repository: repository, reference: reference)
        }
        let response = try await transport.execute(
            RegistryOperation(.HEAD, url(repository, "manifests", reference), headers: Self.manifestAccept,
                              scopes: [.pull(repository)], expecting: [200, 404, 405, 501],
                              what: "manifest \(host)/\(repository):\(reference)", repository: repository, action: "pull"))
        if response.status == 405 || response.status == 501 {
            configuration.logger.info("\(host) does not answer HEAD of manifests (\(response.status)): asking with GET")
            transport.manifestHeadUnsupported.withLockedValue { $0 = true }
            return try await manifestByGET(repository: repository, reference: reference)
        }
        guard response.status == 200 else { return nil }
        guard let header = response.header("Docker-Content-Digest"), let digest = try? Digest(parsing: header) else {
            // No digest header: fall back to fetching the bytes and hashing them.
            return try await manifest(repository: repository, reference: reference).descriptor
        }
        let mediaType = response.header("Content-Type").map(MediaType.init(contentType:)) ?? .ociManifest
        return Descriptor(mediaType: mediaType, digest: digest, size: response.contentLength ?? 0)
    }

    private func manifestByGET(repository: String, reference: String) async throws -> Descriptor? {
        do {
            return try await manifest(repository: repository, reference: reference).descriptor
        } catch RegistryError.notFound {
            return nil
        }
    }

    /// Uploads manifest bytes unchanged under a tag or digest; returns their digest, checked
    /// against the registry's `Docker-Content-Digest`.
    @discardableResult
    public func putManifest(repository: String, reference: String, bytes: [UInt8], mediaType: MediaType) async throws -> Digest {
        let what = manifestName(repository, reference)
        let digest = SHA256.digest(of: bytes)
        let response = try await transport.execute(
            RegistryOperation(.PUT, url(repository, "manifests", reference), headers: ["Content-Type": mediaType.rawValue],
                              scopes: [.push(repository)], body: { .bytes(bytes) },
                              expecting: [200, 201], what: what, repository: repository, action: "push"))
        if let stored = response.contentDigest, stored != digest {
            throw RegistryError.digestMismatch(what: what, expected: digest, actual: stored)
        }
        transport.statistics.withLockedValue { $0.bytesUploaded += Int64(bytes.count) }
        return digest
    }
}
