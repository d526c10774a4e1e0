import AsyncHTTPClient
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import OCI

/// What `uploadBlob` did.
public enum UploadOutcome: Sendable, Equatable {
    case uploaded
    case mounted
}

extension RegistryClient {
    /// Uploads a blob whose bytes come from `content` (called again for each attempt, so a
    /// retry can restart the stream). With `mountFrom`, first asks the registry to mount the
    /// blob from that repository of the same registry, which sends no bytes when it works.
    @discardableResult
    public func uploadBlob<Content: AsyncSequence & Sendable>(
        repository: String, descriptor: Descriptor, mountFrom: String? = nil,
        content: @escaping @Sendable () throws -> Content
    ) async throws -> UploadOutcome where Content.Element == ByteBuffer {
        // One budget for the upload: its restarts and its requests' retries draw on it alike.
        try await transport.withRetryBudget { budget in
            while true {
                do {
                    return try await uploadOnce(repository: repository, descriptor: descriptor, mountFrom: mountFrom, content: content)
                } catch {
                    // A session the registry no longer knows (404 BLOB_UPLOAD_UNKNOWN: it restarted,
                    // or purged it) is started afresh; any other failure as its category says.
                    let failure = (error as? UploadSessionLost).map { (error: $0.error, retriable: true) }
                        ?? Transport.classify(error, host: host, configuration: configuration)
                    guard failure.retriable, let retry = budget.retry() else { throw failure.error }
                    configuration.logger.info("upload of \(descriptor.digest) to \(host)/\(repository): \(Transport.brief(failure.error)); starting it again (\(budget.describe(retry)))")
                    try await transport.backoff(attempt: retry, retryAfter: budget.takeServerDelay())
                }
            }
        }
    }

    /// Asks the registry to link an existing blob of `from` into `repository`; true when it did.
    public func mountBlob(repository: String, digest: Digest, from: String) async throws -> Bool {
        let started = try await startUpload(repository: repository, digest: digest, mountFrom: from)
        if !started.mounted, let location = started.location {
            // The registry opened an upload session instead; close it so nothing is left behind.
            await cancelUpload(session: location, repository: repository)
        }
        return started.mounted
    }

    /// Checks that the credentials may push to `repository` without leaving anything behind:
    /// opens an upload session and cancels it (d8 pushes a `d8WriteCheck` tag instead).
    public func checkPushAccess(repository: String) async throws {
        if let location = try await startUpload(repository: repository, digest: nil, mountFrom: nil).location {
            await cancelUpload(session: location, repository: repository)
        }
    }

    /// `POST .../blobs/uploads/`, with a mount request when `mountFrom` is given: either the
    /// blob was mounted (201) or an upload session was opened (202, its `Location`).
    private func startUpload(repository: String, digest: Digest?, mountFrom: String?) async throws -> (mounted: Bool, location: String?, minimumChunk: Int) {
        var url = "\(base)/v2/\(Self.escaped(repository))/blobs/uploads/"
        var scopes: [Scope] = [.push(repository)]
        let mounting = mountFrom != nil && digest != nil && mountFrom != repository
        if mounting, let mountFrom, let digest {
            url += "?mount=\(digest)&from=\(Self.escaped(mountFrom))"
            scopes.append(.pull(mountFrom))
        }
        let response = try await transport.execute(
            RegistryOperation(.POST, url, scopes: scopes, body: { .bytes(ByteBuffer()) },
                              expecting: mountFrom != nil ? [201, 202] : [202],
                              what: "upload to \(host)/\(repository)", repository: repository, action: "push"))
        if response.status == 201 {
            transport.statistics.withLockedValue { $0.blobsMounted += 1 }
            return (true, nil, 0)
        }
        guard let location = response.location else {
            throw RegistryError.invalidResponse(what: "upload to \(host)/\(repository)", detail: "no Location header")
        }
        let minimum = response.header("OCI-Chunk-Min-Length").flatMap { Int($0) } ?? 0
        return (false, location, minimum)
    }

    /// Closes an upload session (best effort: a registry that already dropped it is fine).
    private func cancelUpload(session: String, repository: String, retryable: Bool = true) async {
        _ = try? await transport.execute(
            RegistryOperation(.DELETE, session, scopes: [.push(repository)], retryable: retryable,
                              expecting: Set(200...299).union([404]), what: "upload session in \(host)/\(repository)",
                              repository: repository, action: "push"))
    }

    private func uploadOnce<Content: AsyncSequence & Sendable>(
        repository: String, descriptor: Descriptor, mountFrom: String?,
        content: @escaping @Sendable () throws -> Content
    ) async throws -> UploadOutcome where Content.Element == ByteBuffer {
        let what = "upload of blob \(descriptor.digest) to \(host)/\(repository)"
        let started = try await startUpload(repository: repository, digest: descriptor.digest, mountFrom: mountFrom)
        if started.mounted { return .mounted }
        guard let session = started.location else {
            throw RegistryError.invalidResponse(what: what, detail: "no upload location")
        }
        let statistics = transport.statistics
        let contentFailure = NIOLockedValueBox<(any Error)?>(nil)
        let counted: @Sendable () throws -> CountingSequence<Content> = {
            CountingSequence(base: try content(), count: { n in statistics.withLockedValue { $0.bytesUploaded += Int64(n) } },
                             failed: { error in contentFailure.withLockedValue { $0 = $0 ?? error } })
        }
        do {
            let upload = BlobUpload(transport: transport, repository: repository, descriptor: descriptor, what: what)
            return try await upload.send(session: session, minimumChunk: started.minimumChunk, counted: counted)
        } catch {
            if let failure = contentFailure.withLockedValue({ $0 }) {
                // The bytes were bad (a corrupt blob in the bundle): close the session, so the
                // registry does not keep an upload holding them, and report that, not what the
                // aborted request looked like on the wire (a connection closed mid-request).
                await cancelUpload(session: session, repository: repository, retryable: false)
                throw failure
            }
            // The bytes may have landed even though the answer did not: a closing PUT whose
            // commit outlasted a timeout (an Ingress's 504, ours), or one retried after the
            // registry had committed it and dropped the session (404). Ask before starting over.
            if !(error is CancellationError), await isStored(descriptor, in: repository) { return .uploaded }
            if case let RegistryError.notFound(_, detail) = error {
                // The registry's own word that it dropped the session; any other 404 there is a
                // proxy that does not route the URL the registry named, which no retry mends.
                guard detail.contains("BLOB_UPLOAD_UNKNOWN") else {
                    throw RegistryError.invalidResponse(what: "upload to \(host)/\(repository)",
                                                        detail: "the upload URL the registry named answers 404 (\(detail.isEmpty ? "no registry error" : detail)): a proxy or Ingress in front of it does not route it; check its paths and the registry's external URL")
                }
                throw UploadSessionLost(error: error)
            }
            throw error
        }
    }

    /// Whether `repository` holds the blob, at its size; false when that cannot be told. One
    /// request, not retried: the upload's own loop decides what happens next.
    private func isStored(_ descriptor: Descriptor, in repository: String) async -> Bool {
        let size = try? await blobSize(repository: repository, digest: descriptor.digest, scope: .push(repository), retryable: false)
        return size == descriptor.size
    }
}

/// An upload session's URL answered 404: the registry dropped the session.
struct UploadSessionLost: Error {
    var error: Error
}

/// The bytes of one blob into an open upload session: one PUT, one streamed PATCH and a PUT,
/// or PATCHes of a fixed size (`push --upload-chunk-size`) and a PUT.
struct BlobUpload {
    let transport: Transport
    let repository: String
    let descriptor: Descriptor
    let what: String
    private var configuration: RegistryConfiguration { transport.configuration }

    init(transport: Transport, repository: String, descriptor: Descriptor, what: String) {
        self.transport = transport
        self.repository = repository
        self.descriptor = descriptor
        self.what = what
    }

    /// A PATCH or PUT of this upload, expecting `expecting`.
    private func operation(_ method: HTTPMethod, _ url: String, headers: HTTPHeaders,
                           body: (@Sendable () throws -> HTTPClientRequest.Body)?, retryable: Bool,
                           expecting: Set<UInt>) -> RegistryOperation {
        RegistryOperation(method, url, headers: headers, scopes: [.push(repository)], body: body, retryable: retryable,
                          expecting: expecting, what: what, repository: repository, action: "push")
    }

    func send<Content: AsyncSequence & Sendable>(
        session: String, minimumChunk: Int, counted: @escaping @Sendable () throws -> CountingSequence<Content>
    ) async throws -> UploadOutcome where Content.Element == ByteBuffer {
        let size = descriptor.size
        if let chunkSize = configuration.uploadChunkSize, size > configuration.monolithicUploadLimit {
            let location = try await sendChunks(location: session, chunkSize: chunkSize, minimumChunk: minimumChunk, content: counted)
            return try await finish(location: location, body: nil)
        }
        if size <= configuration.monolithicUploadLimit {
            // One PUT carries the whole blob.
            return try await finish(location: session, body: { .stream(try counted(), length: .known(size)) })
        }
        // One streamed PATCH, then a PUT that closes the session.
        let response = try await transport.execute(operation(
            .PATCH, session, headers: ["Content-Type": "application/octet-stream"],
            body: { .stream(try counted(), length: .known(size)) }, retryable: false, expecting: [202, 204]))
        return try await finish(location: response.location ?? session, body: nil)
    }

    /// Sends the blob in PATCHes of `chunkSize` bytes (raised to the registry's
    /// `OCI-Chunk-Min-Length`), each with its `Content-Range`. Memory: one chunk.
    private func sendChunks<Content: AsyncSequence & Sendable>(
        location start: String, chunkSize requested: Int, minimumChunk: Int, content: @Sendable () throws -> Content
    ) async throws -> String where Content.Element == ByteBuffer {
        var location = start
        var minimum = minimumChunk
        var offset: Int64 = 0
        var pending = ByteBuffer()
        func send(_ chunk: ByteBuffer) async throws {
            let headers: HTTPHeaders = ["Content-Type": "application/octet-stream",
                                        "Content-Range": "\(offset)-\(offset + Int64(chunk.readableBytes) - 1)"]
            let response = try await transport.execute(operation(
                .PATCH, location, headers: headers, body: { .bytes(chunk) }, retryable: false, expecting: [202, 204]))
            if let value = response.header("OCI-Chunk-Min-Length"), let n = Int(value) { minimum = n }
            location = response.location ?? location
            offset += Int64(chunk.readableBytes)
        }
        for try await var buffer in try content() {
            while buffer.readableBytes > 0 {
                let target = max(requested, minimum)
                let take = min(target - pending.readableBytes, buffer.readableBytes)
                var slice = buffer.readSlice(length: take)!  // invariant: take <= readableBytes
                pending.writeBuffer(&slice)
                if pending.readableBytes >= target {
                    try await send(pending)
                    pending.clear()
                }
            }
        }
        if pending.readableBytes > 0 { try await send(pending) }
        return location
    }

    /// The PUT that closes the session with the digest (and, for a monolithic upload, the bytes).
    private func finish(location: String, body: (@Sendable () throws -> HTTPClientRequest.Body)?) async throws -> UploadOutcome {
        let separator = location.contains("?") ? "&" : "?"
        var headers: HTTPHeaders = ["Content-Type": "application/octet-stream"]
        if body == nil { headers.add(name: "Content-Length", value: "0") }
        let response = try await transport.execute(operation(
            .PUT, "\(location)\(separator)digest=\(descriptor.digest)", headers: headers,
            body: body ?? { .bytes(ByteBuffer()) }, retryable: body == nil, expecting: [201, 204]))
        if let stored = response.contentDigest, stored != descriptor.digest {
            throw RegistryError.digestMismatch(what: what, expected: descriptor.digest, actual: stored)
        }
        return .uploaded
    }
}

/// Passes buffers through unchanged, reporting each one's size.
struct CountingSequence<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let base: Base
    let count: @Sendable (Int) -> Void
    /// Called when the base sequence throws (its bytes were bad), not when sending them fails.
    var failed: @Sendable (any Error) -> Void = { _ in }

    func makeAsyncIterator() -> Iterator { Iterator(base: base.makeAsyncIterator(), count: count, failed: failed) }

    struct Iterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let count: @Sendable (Int) -> Void
        let failed: @Sendable (any Error) -> Void
        mutating func next() async throws -> ByteBuffer? {
            let next: ByteBuffer?
            do {
                next = try await base.next()
            } catch {
                failed(error)
                throw error
            }
            guard let buffer = next else { return nil }
            count(buffer.readableBytes)
            return buffer
        }
    }
}
