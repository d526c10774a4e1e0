import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import OCI
import Streams

/// A registry answered a `Range` request for part of a blob with the whole blob (200): it does
/// not serve ranges, and the blob has to come as one stream.
public struct RangeNotSupported: Error, CustomStringConvertible {
    public let host: String
    public var description: String { "\(host) ignores Range requests" }
}

/// The bytes of one blob as an async sequence of buffers, pulled from the registry with
/// backpressure. Every byte is hashed and counted on the way; the sequence throws instead
/// of ending when the size or digest is wrong, so a consumer never sees a bad blob finish.
/// A dropped connection resumes with `Range` from the last byte received.
///
/// With a `range`, only those bytes come (`Range: bytes=A-B`, answered 206), unverified: the
/// caller hashes the parts of a blob in order itself. A 200 answer to such a request throws
/// `RangeNotSupported`.
public struct BlobDownload: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    let transport: Transport
    let repository: String
    public let descriptor: Descriptor
    /// Called with the size of each buffer as it arrives (progress).
    let onBytes: (@Sendable (Int) -> Void)?
    /// Part of the blob only; nil for all of it, verified.
    var range: Range<Int64>? = nil

    public func makeAsyncIterator() -> Iterator {
        Iterator(download: self)
    }

    public struct Iterator: AsyncIteratorProtocol {
        let download: BlobDownload
        private var body: HTTPClientResponse.Body.AsyncIterator?
        private let verifier: BlobVerifier?
        /// Where the bytes start and end within the blob.
        private let start: Int64
        private let end: Int64
        private var received: Int64 = 0
        /// Bytes still to discard from a server that ignored our Range header.
        private var skip: Int64 = 0
        /// The download's retries, shared with the requests that open (and reopen) it; bytes
        /// received since the last failure start its count again.
        private let budget: RetryBudget
        private var finished = false

        init(download: BlobDownload) {
            self.download = download
            let whole = download.range == nil
            self.verifier = whole ? BlobVerifier(digest: download.descriptor.digest, size: download.descriptor.size) : nil
            self.start = download.range?.lowerBound ?? 0
            self.end = download.range?.upperBound ?? download.descriptor.size
            self.budget = RetryBudget(attempts: download.transport.configuration.maxAttempts)
        }

        private var what: String { "blob \(download.descriptor.digest) of \(download.transport.host)/\(download.repository)" }

        public mutating func next() async throws -> ByteBuffer? {
            guard !finished else { return nil }
            while true {
                if body == nil { try await RetryBudget.$current.withValue(budget) { try await open() } }
                let chunk: ByteBuffer?
                do {
                    chunk = try await body!.next()
                } catch {
                    let failure = Transport.classify(error, host: download.transport.host, configuration: download.transport.configuration)
                    body = nil
                    guard failure.retriable, let retry = budget.retry() else { throw failure.error }
                    download.transport.configuration.logger.info("\(what): \(Transport.brief(failure.error)); resuming at byte \(received) (\(budget.describe(retry)))")
                    try await download.transport.backoff(attempt: retry, retryAfter: nil)
                    continue
                }
                guard var chunk else {
                    if verifier == nil, start + received < end {
                        // A part that ended early: ask for the rest of it.
                        body = nil
                        guard budget.retry() != nil else {
                            throw RegistryError.sizeMismatch(what: what, expected: end - start, actual: received)
                        }
                        continue
                    }
                    finished = true
                    do { try verifier?.finish() } catch { throw mapped(error) }
                    return nil
                }
                if skip > 0 {
                    let drop = Int(Swift.min(skip, Int64(chunk.readableBytes)))
                    chunk.moveReaderIndex(forwardBy: drop)
                    skip -= Int64(drop)
                    if chunk.readableBytes == 0 { continue }
                }
                if verifier == nil, start + received + Int64(chunk.readableBytes) > end {
                    finished = true
                    throw RegistryError.sizeMismatch(what: what, expected: end - start, actual: received + Int64(chunk.readableBytes))
                }
                do {
                    try chunk.withUnsafeReadableBytes { try verifier?.consume($0) }
                } catch {
                    finished = true
                    throw mapped(error)
                }
                received += Int64(chunk.readableBytes)
                budget.progressed()
                download.transport.statistics.withLockedValue { $0.bytesDownloaded += Int64(chunk.readableBytes) }
                download.onBytes?(chunk.readableBytes)
                return chunk
            }
        }

        private func mapped(_ error: Error) -> Error {
            switch error {
            case let StreamsError.digestMismatch(expected, actual):
                return RegistryError.digestMismatch(what: what, expected: expected, actual: actual)
            case let StreamsError.sizeMismatch(_, expected, actual):
                return RegistryError.sizeMismatch(what: what, expected: expected, actual: actual)
            default:
                return error
            }
        }

        private mutating func open() async throws {
            var headers = HTTPHeaders()
            let from = start + received
            let partial = download.range != nil && (start > 0 || end < download.descriptor.size)
            if partial {
                headers.add(name: "Range", value: "bytes=\(from)-\(end - 1)")
            } else if from > 0 {
                headers.add(name: "Range", value: "bytes=\(from)-")
            }
            let transport = download.transport
            let (response, stream) = try await transport.open(RegistryOperation(
                .GET, "\(transport.baseURL)/v2/\(RegistryClient.escaped(download.repository))/blobs/\(download.descriptor.digest)",
                headers: headers, scopes: [.pull(download.repository)], expecting: [200, 206],
                what: what, repository: download.repository, action: "pull"))
            switch response.status {
            case 200 where partial:
                await Transport.drain(stream)
                throw RangeNotSupported(host: transport.host)
            case 200:
                // A full body: skip what we already have (a server that does not do ranges).
                skip = received
            case 206 where from > 0 || partial:
                guard response.header("Content-Range").flatMap(Self.rangeStart) == from else {
                    await Transport.drain(stream)
                    throw RegistryError.invalidResponse(what: what, detail: "resumed at the wrong offset")
                }
                skip = 0
            default:
                await Transport.drain(stream)
                throw RegistryError.invalidResponse(what: what, detail: "status 206 to a request without Range")
            }
            body = stream.makeAsyncIterator()
        }

        /// The first byte of `Content-Range: bytes START-END/TOTAL`.
        static func rangeStart(_ header: String) -> Int64? {
            guard let spec = header.split(separator: " ").last, let dash = spec.firstIndex(of: "-") else { return nil }
            return Int64(spec[..<dash])
        }
    }
}
