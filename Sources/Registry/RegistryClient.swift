import AsyncHTTPClient
import Foundation
import NIOCore
import NIOConcurrencyHelpers
import NIOHTTP1
import OCI
import Streams

/// A manifest as the registry served it: bytes kept exactly, digest checked.
public struct FetchedManifest: Sendable {
    public var bytes: [UInt8]
    public var mediaType: MediaType
    public var digest: Digest
    public var document: ManifestDocument

    public var descriptor: Descriptor {
        Descriptor(mediaType: mediaType, digest: digest, size: Int64(bytes.count))
    }
}

/// What `uploadBlob` did.
public enum UploadOutcome: Sendable, Equatable {
    case uploaded
    case mounted
}

/// A client of one registry host speaking the OCI distribution API. Create one per host and
/// configuration, share it between tasks, and call `shutdown()` when done.
public final class RegistryClient: Sendable {
    /// `text` for a URL's path or query: every byte outside RFC 3986's unreserved characters,
    /// `:` and (unless `segment`, for a tag or digest) `/` percent-encoded, so a name that
    /// slipped past validation (`bad tag/../x`) cannot change the request's path or query.
    public static func escaped(_ text: String, segment: Bool = false) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ":"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where !segment:
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                result += String(format: "%%%02X", byte)
            }
        }
        return result
    }

    public let host: String
    public let configuration: RegistryConfiguration
    let transport: Transport

    public init(host: String, configuration: RegistryConfiguration = RegistryConfiguration()) throws {
        self.host = host
        self.configuration = configuration
        self.transport = try Transport(host: host, configuration: configuration)
    }

    /// Closes connections. Required before the client is released.
    public func shutdown() async {
        await transport.shutdown()
    }

    /// Runs `body` with a client and always shuts it down afterwards.
    public static func with<T: Sendable>(host: String, configuration: RegistryConfiguration,
                                         _ body: (RegistryClient) async throws -> T) async throws -> T {
        let client = try RegistryClient(host: host, configuration: configuration)
        do {
            let result = try await body(client)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }

    public var statistics: TransferStatistics { transport.statistics.withLockedValue { $0 } }

    private var base: String { transport.baseURL }

    // MARK: ping

    /// `GET /v2/`: checks reachability, TLS and (when credentials are given) that they are accepted.
    public func ping() async throws {
        let url = "\(base)/v2/"
        let response = try await transport.send(RegistryRequest(method: .GET, url: url, scopes: []))
        guard response.status.code == 200 else {
            throw await unexpected(response, method: "GET", url: url, what: "registry API of \(host)", repository: "", action: "access")
        }
        await Transport.drain(response)
    }

    // MARK: manifests

    /// Fetches a manifest or index by tag or digest, with every manifest media type accepted.
    /// The digest is checked against a digest reference, or else against `Docker-Content-Digest`.
    public func manifest(repository: String, reference: String) async throws -> FetchedManifest {
        let url = "\(base)/v2/\(Self.escaped(repository))/manifests/\(Self.escaped(reference, segment: true))"
        let what = "manifest \(host)/\(repository)\(reference.hasPrefix("sha256:") ? "@" : ":")\(reference)"
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: MediaType.manifestAcceptTypes.map(\.rawValue).joined(separator: ", "))
        let (response, body) = try await transport.retrying(what) {
            let response = try await transport.send(RegistryRequest(method: .GET, url: url, headers: headers, scopes: [.pull(repository)]))
            guard response.status.code == 200 else {
                throw await unexpected(response, method: "GET", url: url, what: what, repository: repository, action: "pull")
            }
            return (response, try await transport.collect(response, upTo: ManifestDocument.maxSize, what: what))
        }
        let bytes = Array(body.readableBytesView)
        let digest = SHA256.digest(of: bytes)
        if let expected = try? Digest(parsing: reference), expected != digest {
            throw RegistryError.digestMismatch(what: what, expected: expected, actual: digest)
        }
        if let header = response.headers.first(name: "Docker-Content-Digest"), header.hasPrefix("sha256:"),
           let announced = try? Digest(parsing: header), announced != digest {
            throw RegistryError.digestMismatch(what: what, expected: announced, actual: digest)
        }
        let contentType = response.headers.first(name: "Content-Type").map(MediaType.init(contentType:))
        let document: ManifestDocument
        do {
            document = try ManifestDocument.parse(bytes, contentType: contentType)
        } catch {
            throw RegistryError.invalidResponse(what: what, detail: "\(error)")
        }
        return FetchedManifest(bytes: bytes, mediaType: document.mediaType, digest: digest, document: document)
    }

    /// `HEAD` of a manifest: its descriptor, or nil when the registry does not have it.
    public func manifestDescriptor(repository: String, reference: String) async throws -> Descriptor? {
        let url = "\(base)/v2/\(Self.escaped(repository))/manifests/\(Self.escaped(reference, segment: true))"
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: MediaType.manifestAcceptTypes.map(\.rawValue).joined(separator: ", "))
        let response = try await transport.send(RegistryRequest(method: .HEAD, url: url, headers: headers, scopes: [.pull(repository)]))
        await Transport.drain(response)
        switch response.status.code {
        case 200:
            guard let header = response.headers.first(name: "Docker-Content-Digest"), let digest = try? Digest(parsing: header) else {
                // No digest header: fall back to fetching the bytes and hashing them.
                return try await manifest(repository: repository, reference: reference).descriptor
            }
            let size = response.headers.first(name: "Content-Length").flatMap { Int64($0) } ?? 0
            let mediaType = response.headers.first(name: "Content-Type").map(MediaType.init(contentType:)) ?? .ociManifest
            return Descriptor(mediaType: mediaType, digest: digest, size: size)
        case 404:
            return nil
        default:
            throw await unexpected(response, method: "HEAD", url: url, what: "manifest \(host)/\(repository):\(reference)",
                                   repository: repository, action: "pull")
        }
    }

    /// Uploads manifest bytes unchanged under a tag or digest; returns their digest, checked
    /// against the registry's `Docker-Content-Digest`.
    @discardableResult
    public func putManifest(repository: String, reference: String, bytes: [UInt8], mediaType: MediaType) async throws -> Digest {
        let url = "\(base)/v2/\(Self.escaped(repository))/manifests/\(Self.escaped(reference, segment: true))"
        let what = "manifest \(host)/\(repository)\(reference.hasPrefix("sha256:") ? "@" : ":")\(reference)"
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: mediaType.rawValue)
        let digest = SHA256.digest(of: bytes)
        let response = try await transport.send(RegistryRequest(
            method: .PUT, url: url, headers: headers, scopes: [.push(repository)],
            body: { .bytes(bytes) }))
        guard response.status.code == 201 || response.status.code == 200 else {
            throw await unexpected(response, method: "PUT", url: url, what: what, repository: repository, action: "push")
        }
        await Transport.drain(response)
        if let header = response.headers.first(name: "Docker-Content-Digest"), header.hasPrefix("sha256:"),
           let stored = try? Digest(parsing: header), stored != digest {
            throw RegistryError.digestMismatch(what: what, expected: digest, actual: stored)
        }
        transport.statistics.withLockedValue { $0.bytesUploaded += Int64(bytes.count) }
        return digest
    }

    // MARK: blobs

    /// `HEAD` of a blob: its size, or nil when the repository does not have it.
    public func blobSize(repository: String, digest: Digest) async throws -> Int64? {
        let url = "\(base)/v2/\(Self.escaped(repository))/blobs/\(digest)"
        let response = try await transport.send(RegistryRequest(method: .HEAD, url: url, scopes: [.pull(repository)]))
        await Transport.drain(response)
        switch response.status.code {
        case 200:
            return response.headers.first(name: "Content-Length").flatMap { Int64($0) } ?? -1
        case 404:
            return nil
        default:
            throw await unexpected(response, method: "HEAD", url: url, what: "blob \(digest) in \(host)/\(repository)",
                                   repository: repository, action: "pull")
        }
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

    /// Streams a blob into `sink`, one buffer at a time; throws on a wrong digest or size
    /// after the last buffer, so the sink must not treat its output as complete until this returns.
    public func fetchBlob(repository: String, descriptor: Descriptor,
                          into sink: (ByteBuffer) async throws -> Void) async throws {
        for try await chunk in blob(repository: repository, descriptor: descriptor) {
            try await sink(chunk)
        }
    }

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
                    let failure = Transport.classify(error, host: host, configuration: configuration)
                    guard failure.retriable, let retry = budget.retry() else { throw failure.error }
                    configuration.logger.info("upload of \(descriptor.digest) to \(host)/\(repository): \(Transport.brief(failure.error)); starting it again (\(budget.describe(retry)))")
                    try await transport.backoff(attempt: retry, retryAfter: nil)
                }
            }
        }
    }

    /// Asks the registry to link an existing blob of `from` into `repository`; true when it did.
    public func mountBlob(repository: String, digest: Digest, from: String) async throws -> Bool {
        let (mounted, location, _) = try await startUpload(repository: repository, digest: digest, mountFrom: from)
        if !mounted, let location {
            // The registry opened an upload session instead; close it so nothing is left behind.
            _ = try? await transport.send(RegistryRequest(method: .DELETE, url: location, scopes: [.push(repository)]))
        }
        return mounted
    }

    /// Checks that the credentials may push to `repository` without leaving anything behind:
    /// opens an upload session and cancels it (d8 pushes a `d8WriteCheck` tag instead).
    public func checkPushAccess(repository: String) async throws {
        let (_, location, _) = try await startUpload(repository: repository, digest: nil, mountFrom: nil)
        if let location {
            _ = try? await transport.send(RegistryRequest(method: .DELETE, url: location, scopes: [.push(repository)]))
        }
    }

    private func startUpload(repository: String, digest: Digest?, mountFrom: String?) async throws -> (mounted: Bool, location: String?, minimumChunk: Int) {
        var url = "\(base)/v2/\(Self.escaped(repository))/blobs/uploads/"
        var scopes: [Scope] = [.push(repository)]
        if let mountFrom, let digest, mountFrom != repository {
            url += "?mount=\(digest)&from=\(Self.escaped(mountFrom))"
            scopes.append(.pull(mountFrom))
        }
        let response = try await transport.send(RegistryRequest(method: .POST, url: url, scopes: scopes, body: { .bytes(ByteBuffer()) }))
        switch response.status.code {
        case 201 where mountFrom != nil:
            await Transport.drain(response)
            transport.statistics.withLockedValue { $0.blobsMounted += 1 }
            return (true, nil, 0)
        case 202:
            await Transport.drain(response)
            guard let location = response.headers.first(name: "Location").flatMap({ Transport.resolve($0, against: url) }) else {
                throw RegistryError.invalidResponse(what: "upload to \(host)/\(repository)", detail: "no Location header")
            }
            let minimum = response.headers.first(name: "OCI-Chunk-Min-Length").flatMap { Int($0) } ?? 0
            return (false, location, minimum)
        default:
            throw await unexpected(response, method: "POST", url: url, what: "upload to \(host)/\(repository)",
                                   repository: repository, action: "push")
        }
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
            return try await send(descriptor, session: session, repository: repository, minimumChunk: started.minimumChunk,
                                  counted: counted, what: what)
        } catch {
            if let failure = contentFailure.withLockedValue({ $0 }) {
                // The bytes were bad (a corrupt blob in the bundle): close the session, so the
                // registry does not keep an upload holding them, and report that, not what the
                // aborted request looked like on the wire (a connection closed mid-request).
                _ = try? await transport.send(RegistryRequest(method: .DELETE, url: session, scopes: [.push(repository)], retryable: false))
                throw failure
            }
            throw error
        }
    }

    /// The blob's bytes into the open upload `session`, then the PUT that closes it.
    private func send<Content: AsyncSequence & Sendable>(
        _ descriptor: Descriptor, session: String, repository: String, minimumChunk: Int,
        counted: @escaping @Sendable () throws -> CountingSequence<Content>, what: String
    ) async throws -> UploadOutcome where Content.Element == ByteBuffer {
        var location = session
        let size = descriptor.size

        if let chunkSize = configuration.uploadChunkSize, size > configuration.monolithicUploadLimit {
            location = try await uploadChunks(location: location, repository: repository, descriptor: descriptor,
                                              chunkSize: chunkSize, minimumChunk: minimumChunk, content: counted, what: what)
            return try await finishUpload(location: location, repository: repository, descriptor: descriptor, body: nil, what: what)
        }
        if size <= configuration.monolithicUploadLimit {
            // One PUT carries the whole blob.
            return try await finishUpload(location: location, repository: repository, descriptor: descriptor,
                                          body: { .stream(try counted(), length: .known(size)) }, what: what)
        }
        // One streamed PATCH, then a PUT that closes the session.
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/octet-stream")
        let response = try await transport.send(RegistryRequest(
            method: .PATCH, url: location, headers: headers, scopes: [.push(repository)],
            body: { .stream(try counted(), length: .known(size)) }, retryable: false))
        guard response.status.code == 202 || response.status.code == 204 else {
            throw await unexpected(response, method: "PATCH", url: location, what: what, repository: repository, action: "push")
        }
        await Transport.drain(response)
        if let next = response.headers.first(name: "Location").flatMap({ Transport.resolve($0, against: location) }) {
            location = next
        }
        return try await finishUpload(location: location, repository: repository, descriptor: descriptor, body: nil, what: what)
    }

    /// Sends the blob in PATCHes of `chunkSize` bytes (raised to the registry's
    /// `OCI-Chunk-Min-Length`), each with its `Content-Range`. Memory: one chunk.
    private func uploadChunks<Content: AsyncSequence & Sendable>(
        location start: String, repository: String, descriptor: Descriptor, chunkSize requested: Int,
        minimumChunk: Int, content: @Sendable () throws -> Content, what: String
    ) async throws -> String where Content.Element == ByteBuffer {
        var location = start
        var minimum = minimumChunk
        var offset: Int64 = 0
        var pending = ByteBuffer()
        func send(_ chunk: ByteBuffer) async throws {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/octet-stream")
            headers.add(name: "Content-Range", value: "\(offset)-\(offset + Int64(chunk.readableBytes) - 1)")
            let response = try await transport.send(RegistryRequest(
                method: .PATCH, url: location, headers: headers, scopes: [.push(repository)],
                body: { .bytes(chunk) }, retryable: false))
            guard response.status.code == 202 || response.status.code == 204 else {
                throw await unexpected(response, method: "PATCH", url: location, what: what, repository: repository, action: "push")
            }
            await Transport.drain(response)
            if let value = response.headers.first(name: "OCI-Chunk-Min-Length"), let n = Int(value) { minimum = n }
            if let next = response.headers.first(name: "Location").flatMap({ Transport.resolve($0, against: location) }) {
                location = next
            }
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

    private func finishUpload(location: String, repository: String, descriptor: Descriptor,
                              body: (@Sendable () throws -> HTTPClientRequest.Body)?, what: String) async throws -> UploadOutcome {
        let separator = location.contains("?") ? "&" : "?"
        let url = "\(location)\(separator)digest=\(descriptor.digest)"
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/octet-stream")
        if body == nil { headers.add(name: "Content-Length", value: "0") }
        let response = try await transport.send(RegistryRequest(
            method: .PUT, url: url, headers: headers, scopes: [.push(repository)],
            body: body ?? { .bytes(ByteBuffer()) }, retryable: body == nil))
        guard response.status.code == 201 || response.status.code == 204 else {
            throw await unexpected(response, method: "PUT", url: url, what: what, repository: repository, action: "push")
        }
        await Transport.drain(response)
        if let header = response.headers.first(name: "Docker-Content-Digest"), header.hasPrefix("sha256:"),
           let stored = try? Digest(parsing: header), stored != descriptor.digest {
            throw RegistryError.digestMismatch(what: what, expected: descriptor.digest, actual: stored)
        }
        return .uploaded
    }

    // MARK: tags

    /// Every tag of a repository, following `Link` pagination.
    public func tags(repository: String, pageSize: Int = 1000) async throws -> [String] {
        var url: String? = "\(base)/v2/\(Self.escaped(repository))/tags/list?n=\(pageSize)"
        var tags: [String] = []
        var pages = 0
        while let current = url {
            pages += 1
            guard pages <= 10_000 else {
                throw RegistryError.invalidResponse(what: "tags of \(host)/\(repository)", detail: "more than 10000 pages")
            }
            let what = "a tag list page of \(host)/\(repository)"
            let (response, body) = try await transport.retrying(what) {
                let response = try await transport.send(RegistryRequest(method: .GET, url: current, scopes: [.pull(repository)]))
                guard response.status.code == 200 else {
                    throw await unexpected(response, method: "GET", url: current, what: "repository \(host)/\(repository)",
                                           repository: repository, action: "pull")
                }
                return (response, try await transport.collect(response, upTo: 16 << 20, what: what))
            }
            struct Page: Decodable { var tags: [String]? }
            guard let page = try? JSONDecoder().decode(Page.self, from: Data(body.readableBytesView)) else {
                throw RegistryError.invalidResponse(what: "tags of \(host)/\(repository)", detail: "not a tag list")
            }
            tags += page.tags ?? []
            url = response.headers.first(name: "Link").flatMap(nextLink(fromLinkHeader:)).flatMap { Transport.resolve($0, against: current) }
        }
        return tags
    }

    // MARK: errors

    func unexpected(_ response: HTTPClientResponse, method: String, url: String, what: String,
                    repository: String, action: String) async -> RegistryError {
        await transport.unexpected(response, method: method, url: url, what: what, repository: repository, action: action)
    }
}

extension Transport {
    /// The error for a status the caller did not expect, with the registry's own message.
    func unexpected(_ response: HTTPClientResponse, method: String, url: String, what: String,
                    repository: String, action: String) async -> RegistryError {
        let detail = await Transport.errorDetail(of: response)
        switch response.status.code {
        case 404:
            return .notFound(what: what, detail: detail)
        case 401:
            return await auth.finalUnauthorized(header: response.headers.first(name: "WWW-Authenticate"))
        case 403:
            return .forbidden(host: host, repository: repository, action: action, user: configuration.credential?.username, detail: detail)
        case 400 where detail.contains("HTTPS server"):
            return .tlsFailure(host: host, detail: "the registry serves HTTPS", hint: "drop \(configuration.optionNames.insecure)")
        default:
            return .http(method: method, url: Transport.redact(url), status: Int(response.status.code), detail: detail)
        }
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
