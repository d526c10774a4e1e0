import NIOCore
import OCI

extension RegistryClient {
    /// `HEAD` of a blob: its size, or nil when the repository does not have it.
    public func blobSize(repository: String, digest: Digest) async throws -> Int64? {
        try await blobSize(repository: repository, digest: digest, scope: .pull(repository), retryable: true)
    }

    /// As above, under `scope` (an upload asks with its push token) and, with `retryable`
    /// false, in one request whatever comes back.
    func blobSize(repository: String, digest: Digest, scope: Scope, retryable: Bool) async throws -> Int64? {
        let response = try await transport.execute(
            RegistryOperation(.HEAD, "\(base)/v2/\(Self.escaped(repository))/blobs/\(digest)", scopes: [scope], retryable: retryable,
                              expecting: [200, 404], what: "blob \(digest) in \(host)/\(repository)",
                              repository: repository, action: scope.actions.last ?? "pull"))
        guard response.status == 200 else { return nil }
        return response.contentLength ?? -1
    }

    /// The blob's bytes as a verified, resuming stream (see `BlobDownload`).
    public func blob(repository: String, descriptor: Descriptor, onBytes: (@Sendable (Int) -> Void)? = nil) -> BlobDownload {
        BlobDownload(transport: transport, repository: repository, descriptor: descriptor, onBytes: onBytes)
    }

    /// Bytes `range` of a blob, unverified (the caller hashes the parts in order); throws
    /// `RangeNotSupported` when the registry answers with the whole blob.
    public func blob(repository: String, descriptor: Descriptor, range: Range<Int64>,
                     onBytes: (@Sendable (Int) -> Void)? = nil) -> BlobDownload {
        BlobDownload(transport: transport, repository: repository, descriptor: descriptor, onBytes: onBytes, range: range)
    }
}
