import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Network
import Streams

/// One request to a registry, described so it can be sent again: the body is a factory.
struct RegistryRequest: Sendable {
    var method: HTTPMethod
    var url: String
    var headers: HTTPHeaders = [:]
    /// What the token must grant; also names the repository in errors.
    var scopes: [Scope]
    var body: (@Sendable () throws -> HTTPClientRequest.Body)?
    /// False for a streamed upload whose body cannot be replayed within the same upload session.
    var retryable = true
}

/// A response body that broke off mid-transfer (`error` says how); the exchange may be tried again.
struct BodyInterrupted: Error {
    var error: Error
}

/// Counters of what crossed the wire, for progress, summaries and tests.
public struct TransferStatistics: Sendable, Equatable {
    public var requests = 0
    public var retries = 0
    public var bytesDownloaded: Int64 = 0
    public var bytesUploaded: Int64 = 0
    public var blobsMounted = 0
}

/// Sends requests to one registry host: authentication, redirects, retries with backoff,
/// and the mapping of transport failures onto `RegistryError`.
final class Transport: Sendable {
    static let userAgent = "dkp-mirror/0.1"

    let host: String
    let configuration: RegistryConfiguration
    /// One HTTP client per route (direct, or through the proxy the settings give a URL).
    let clients: HTTPClients
    let auth: Authenticator
    let statistics = NIOLockedValueBox(TransferStatistics())
    /// The registry answered a manifest HEAD with 405 or 501: existence checks use GET.
    let manifestHeadUnsupported = NIOLockedValueBox(false)
    private var logger: Logger { configuration.logger }

    init(host: String, configuration: RegistryConfiguration) throws {
        self.host = host
        self.configuration = configuration
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = configuration.trustRoots
        if configuration.tlsSkipVerify { tls.certificateVerification = .none }
        if let caFile = configuration.caFile {
            do {
                let certificates = try NIOSSLCertificate.fromPEMFile(caFile)
                guard !certificates.isEmpty else { throw RegistryError.invalidInput("") }
                tls.additionalTrustRoots = [.certificates(certificates)]
            } catch {
                throw RegistryError.invalidInput("cannot use CA file \(caFile): it is missing, unreadable or holds no PEM certificate; pass \(configuration.optionNames.caFile) with the PEM bundle of the CA that signed the registry's certificate")
            }
        }
        var pool = HTTPClient.Configuration.ConnectionPool(idleTimeout: .seconds(60),
                                                            concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxConnections)
        // Connection retries are ours (with backoff and a clear error), not a silent loop inside the pool.
        pool.retryConnectionEstablishment = false
        var http = HTTPClient.Configuration(
            tlsConfiguration: tls,
            redirectConfiguration: .disallow,
            timeout: .init(connect: .init(configuration.connectTimeout),
                           read: .init(configuration.idleTimeout),
                           write: .init(configuration.idleTimeout)),
            connectionPool: pool,
            decompression: .disabled)
        // Separate connections per transfer beat multiplexing many large blobs on one HTTP/2 stream window.
        http.httpVersion = .http1Only
        self.clients = HTTPClients(configuration: http, proxies: configuration.proxies)
        self.auth = Authenticator(host: host, configuration: configuration, clients: self.clients, statistics: statistics)
    }

    func shutdown() async {
        await clients.shutdown()
    }

    var baseURL: String { "\(configuration.scheme)://\(host)" }

    /// Sends `request`, answering auth challenges, following redirects of GET/HEAD (without
    /// credentials once they leave the registry's origin) and retrying what may succeed later.
    /// The caller owns the returned response and must consume or drop its body.
    func send(_ request: RegistryRequest) async throws -> HTTPClientResponse {
        try await withRetryBudget { budget in try await send(request, budget: budget) }
    }

    private func send(_ request: RegistryRequest, budget: RetryBudget) async throws -> HTTPClientResponse {
        var reauthenticated = false
        var url = request.url
        var redirects = 0
        // Credentials go only to the registry's own origin: an upload `Location` naming another
        // host gets none, as a redirect to blob storage gets none (as Go's registry clients do).
        var leftOrigin = !Self.sameOrigin(url, baseURL)
        if leftOrigin, let refusal = Self.downgrade(of: url, from: baseURL, host: host) { throw refusal }
        while true {
            try Task.checkCancellation()
            var outgoing = HTTPClientRequest(url: url)
            outgoing.method = request.method
            outgoing.headers = request.headers
            outgoing.headers.replaceOrAdd(name: "User-Agent", value: Self.userAgent)
            var sentAuthorization: String?
            if !leftOrigin, let authorization = try await auth.authorization(for: request.scopes) {
                outgoing.headers.replaceOrAdd(name: "Authorization", value: authorization)
                sentAuthorization = authorization
            }
            if let body = request.body, redirects == 0 { outgoing.body = try body() }
            statistics.withLockedValue { $0.requests += 1 }

            let response: HTTPClientResponse
            do {
                response = try await clients.client(for: url).execute(outgoing, deadline: .distantFuture)
            } catch {
                let failure = Self.classify(error, host: host, configuration: configuration, proxy: clients.proxy(for: url))
                if failure.retriable, request.retryable, let retry = budget.retry() {
                    logger.info("\(request.method) \(Self.redact(url)): \(Self.brief(failure.error)); retrying (\(budget.describe(retry)))")
                    try await backoff(attempt: retry, retryAfter: nil)
                    continue
                }
                throw failure.error
            }
            let status = Int(response.status.code)
            logger.debug("\(request.method) \(Self.redact(url)) -> \(status)")

            if status == 401, !leftOrigin {
                let challenge = response.headers.first(name: "WWW-Authenticate")
                if reauthenticated || !request.retryable && sentAuthorization != nil {
                    let detail = await Self.errorDetail(of: response)
                    throw await auth.finalUnauthorized(header: challenge, sentAuthorization: sentAuthorization,
                                                       registryDetail: detail, scopes: request.scopes)
                }
                await Self.drain(response)
                try await auth.challenged(by: challenge, scopes: request.scopes, sentAuthorization: sentAuthorization)
                reauthenticated = true
                continue
            }
            if [301, 302, 303, 307, 308].contains(status), request.method == .GET || request.method == .HEAD,
               let location = response.headers.first(name: "Location") {
                await Self.drain(response)
                redirects += 1
                guard redirects <= 5, let next = Self.resolve(location, against: url) else {
                    throw RegistryError.invalidResponse(what: Self.redact(request.url), detail: "too many or unusable redirects")
                }
                if !Self.sameOrigin(next, baseURL) { leftOrigin = true }
                url = next
                continue
            }
            if RegistryError.mayPassOnRetry(status: status) {
                let retryAfter = response.headers.first(name: "Retry-After").flatMap(Self.parseRetryAfter)
                if request.retryable, let retry = budget.retry() {
                    await Self.drain(response)
                    logger.info("\(request.method) \(Self.redact(url)): status \(status); retrying (\(budget.describe(retry)))")
                    try await backoff(attempt: retry, retryAfter: retryAfter)
                    continue
                }
                // An upload that restarts after this waits as long as the server asked.
                budget.serverAskedToWait(retryAfter)
            }
            return response
        }
    }

    /// Waits before a retry: `Retry-After` when the server gave one (capped), else exponential backoff with jitter.
    func backoff(attempt: Int, retryAfter: Duration?) async throws {
        statistics.withLockedValue { $0.retries += 1 }
        try await Task.sleep(for: Self.backoffDelay(attempt: attempt, retryAfter: retryAfter, configuration: configuration))
    }

    static func backoffDelay(attempt: Int, retryAfter: Duration?, configuration: RegistryConfiguration) -> Duration {
        if let retryAfter { return min(retryAfter, configuration.maxBackoff * 3) }
        let exponential = configuration.initialBackoff * (1 << min(attempt - 1, 16))
        return min(exponential, configuration.maxBackoff) * Double.random(in: 0.5...1.0)
    }

    /// Reads a whole small body (a manifest, a tag list, a token) of at most `limit` bytes.
    /// A larger one is refused; a transfer that breaks off throws `BodyInterrupted`, which
    /// `retrying` answers by sending the request again.
    func collect(_ response: HTTPClientResponse, upTo limit: Int, what: String) async throws -> ByteBuffer {
        do {
            return try await response.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw RegistryError.tooLarge(what: what, limit: limit)
        } catch {
            let failure = Self.classify(error, host: host, configuration: configuration)
            throw failure.retriable ? BodyInterrupted(error: failure.error) : failure.error
        }
    }

    /// Runs `exchange` (a request and the reading of its small body) again, with backoff,
    /// while the body breaks off; `send` already retries everything up to the response head.
    func retrying<T>(_ what: String, _ exchange: () async throws -> T) async throws -> T {
        try await withRetryBudget { budget in
            while true {
                do {
                    return try await exchange()
                } catch let interrupted as BodyInterrupted {
                    guard let retry = budget.retry() else { throw interrupted.error }
                    logger.info("\(what): \(Self.brief(interrupted.error)); retrying (\(budget.describe(retry)))")
                    try await backoff(attempt: retry, retryAfter: nil)
                }
            }
        }
    }

    // MARK: helpers

    /// Reads away a response's body (a small one; a larger one is dropped with its connection).
    static func drain(_ response: HTTPClientResponse) async {
        await drain(response.body)
    }

    static func drain(_ body: HTTPClientResponse.Body) async {
        _ = try? await body.collect(upTo: 64 << 10)
    }

    /// Reads an error body (up to 64 KiB) into a short human message.
    static func errorDetail(of response: HTTPClientResponse) async -> String {
        guard let body = try? await response.body.collect(upTo: 64 << 10) else { return "" }
        return errorDetail(body)
    }

    /// The registry's `{"errors":[{"code","message"}]}` as "CODE: message", else a short printable excerpt.
    static func errorDetail(_ body: ByteBuffer) -> String {
        struct Errors: Decodable {
            struct Item: Decodable { var code: String?; var message: String? }
            var errors: [Item]?
        }
        if let decoded = try? JSONDecoder().decode(Errors.self, from: Data(body.readableBytesView)), let items = decoded.errors, !items.isEmpty {
            return items.map { [$0.code, $0.message].compactMap { $0 }.joined(separator: ": ") }.joined(separator: "; ")
        }
        let text = String(decoding: body.readableBytesView.prefix(300), as: UTF8.self)
            .filter { !$0.isNewline && ($0.isASCII ? ($0.asciiValue! >= 32) : true) }
        return String(text.prefix(200)).trimmed(" ")
    }

    /// A URL for messages: the query is dropped (upload session state, scopes).
    static func redact(_ url: String) -> String {
        url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
    }

    static func resolve(_ location: String, against url: String) -> String? {
        guard let base = URL(string: url), let resolved = URL(string: location, relativeTo: base) else { return nil }
        return resolved.absoluteString
    }

    /// The refusal of a plain-HTTP URL on the registry's own host when the registry is spoken
    /// to over HTTPS: an upload `Location` from a registry behind a TLS-terminating proxy that
    /// does not know it is reached over HTTPS. The credentials are not sent in the clear.
    static func downgrade(of url: String, from base: String, host: String) -> RegistryError? {
        guard let target = URLComponents(string: url), let origin = URLComponents(string: base),
              target.scheme?.lowercased() == "http", origin.scheme == "https",
              target.host?.lowercased() == origin.host?.lowercased() else { return nil }
        return .tlsFailure(host: host, detail: "it named a plain-HTTP URL (\(redact(url))) to send data to; credentials are not sent without TLS",
                           hint: "have the registry build its URLs with https (its external URL; behind an Ingress or proxy: X-Forwarded-Proto: https)")
    }

    static func sameOrigin(_ a: String, _ b: String) -> Bool {
        guard let x = URLComponents(string: a), let y = URLComponents(string: b) else { return false }
        func port(_ c: URLComponents) -> Int { c.port ?? (c.scheme == "https" ? 443 : 80) }
        return x.scheme == y.scheme && x.host?.lowercased() == y.host?.lowercased() && port(x) == port(y)
    }

    /// `Retry-After` as seconds or an HTTP date.
    static func parseRetryAfter(_ value: String) -> Duration? {
        let trimmed = value.trimmed(" ")
        if let seconds = Int(trimmed) { return .seconds(max(0, seconds)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: trimmed) else { return nil }
        return .milliseconds(max(0, Int64(date.timeIntervalSinceNow * 1000)))
    }

    /// Maps a thrown transport error onto a `RegistryError` and says whether trying again may help.
    /// `proxy` is the proxy the request went through, if any: failures to reach it, or that it
    /// reports, are said to be the proxy's.
    static func classify(_ error: Error, host: String, configuration: RegistryConfiguration,
                         proxy: ProxyEndpoint? = nil) -> (error: Error, retriable: Bool) {
        let names = configuration.optionNames
        if let proxy, let failure = classifyProxyFailure(error, host: host, proxy: proxy) { return failure }
        switch error {
        case is CancellationError:
            return (error, false)
        case let error as RegistryError:
            return (error, error.mayPassOnRetry)
        case is StreamsError:
            return (error, false)
        case let error as HTTPClientError:
            switch error {
            case .connectTimeout:
                return (RegistryError.cannotConnect(host: host, detail: "connection timed out", hint: "check the address and that the registry is reachable"), true)
            case .readTimeout, .writeTimeout:
                return (RegistryError.timedOut(host: host, detail: "no data for \(configuration.idleTimeout)"), true)
            case .remoteConnectionClosed, .uncleanShutdown, .tlsHandshakeTimeout, .bodyLengthMismatch:
                return (RegistryError.cannotConnect(host: host, detail: "the connection was closed mid-request", hint: "check the network"), true)
            case .cancelled:
                return (CancellationError(), false)
            default:
                break
            }
        case is HTTPParserError:
            // A body cut short mid-transfer surfaces as an unexpected EOF in the parser.
            return (RegistryError.cannotConnect(host: host, detail: "the connection was cut mid-response", hint: "check the network"), true)
        case let error as NIOConnectionError:
            if error.connectionErrors.isEmpty, error.dnsAError != nil || error.dnsAAAAError != nil {
                return (RegistryError.cannotConnect(host: host, detail: RegistryError.unresolvedHost, hint: "check the registry address"), false)
            }
            let reason = error.connectionErrors.first.map { "\($0.error)" } ?? "\(error)"
            return (RegistryError.cannotConnect(host: host, detail: Self.shortSocketError(reason), hint: "check the address and that the registry is running"), true)
        default:
            break
        }
        let text = String(describing: error)
        let lower = text.lowercased()
        if lower.contains("certificate_verify_failed") || lower.contains("certificate verify failed")
            || lower.contains("unable to get local issuer") || lower.contains("self signed") || lower.contains("self-signed") {
            let hint = configuration.caFile.map { "\($0) (\(names.caFile)) is not the CA that signed \(host)'s certificate: pass the one that did, "
                + "or \(names.tlsSkipVerify) to skip verification" }
                ?? "pass \(names.caFile) PEM with the CA that signed it, or \(names.tlsSkipVerify) to skip verification"
            return (RegistryError.untrustedCertificate(host: host, detail: "certificate verify failed", hint: hint), false)
        }
        if lower.contains("wrong_version_number") || lower.contains("http_request") {
            return (RegistryError.tlsFailure(host: host, detail: "the server does not speak TLS",
                    hint: "if the registry serves plain HTTP, pass \(names.insecure)"), false)
        }
        if error is NIOSSLError || lower.contains("ssl") || lower.contains("tls") {
            return (RegistryError.tlsFailure(host: host, detail: String(text.prefix(200)),
                    hint: "check the registry's TLS setup, \(names.caFile) or \(names.insecure)"), false)
        }
        if lower.contains("refused") {
            return (RegistryError.cannotConnect(host: host, detail: "connection refused", hint: "check the address and that the registry is running"), true)
        }
        if error is IOError || error is ChannelError || lower.contains("reset") || lower.contains("broken pipe") {
            return (RegistryError.cannotConnect(host: host, detail: String(text.prefix(200)), hint: "check the network"), true)
        }
        // Anything else (an error thrown by an upload's own byte source, say) passes through unchanged.
        return (error, false)
    }

    /// Failures of the proxy hop: it cannot be reached, wants credentials, or will not tunnel.
    static func classifyProxyFailure(_ error: Error, host: String, proxy: ProxyEndpoint) -> (error: Error, retriable: Bool)? {
        let variable = "--proxy or HTTPS_PROXY/HTTP_PROXY"
        switch error {
        case let error as HTTPClientError:
            switch error {
            case .proxyAuthenticationRequired:
                return (RegistryError.cannotConnect(host: host, detail: "the proxy \(proxy) answered 407: it wants credentials, or refused the ones given",
                                                    hint: "give them in the proxy URL (http://USER:PASSWORD@HOST:PORT in \(variable))"), false)
            case .invalidProxyResponse:
                // Not always a 407: tinyproxy, for one, answers a CONNECT with bad credentials with 401.
                return (RegistryError.cannotConnect(host: host, detail: "the proxy \(proxy) refused to open a tunnel (CONNECT) to \(host)",
                                                    hint: "check the credentials in the proxy URL (http://USER:PASSWORD@HOST:PORT in \(variable)), that the proxy lets CONNECT through to this host and port, or name the host in NO_PROXY"), false)
            case .httpProxyHandshakeTimeout, .socksHandshakeTimeout:
                return (RegistryError.cannotConnect(host: host, detail: "the proxy \(proxy) did not answer in time", hint: "check the proxy"), true)
            case .connectTimeout:
                return (RegistryError.cannotConnect(host: host, detail: "connecting to the proxy \(proxy) timed out", hint: "check \(variable)"), true)
            default:
                return nil
            }
        case let error as NIOConnectionError:
            let reason = error.connectionErrors.first.map { shortSocketError("\($0.error)") } ?? RegistryError.unresolvedHost
            return (RegistryError.cannotConnect(host: host, detail: "cannot reach the proxy \(proxy): \(reason)",
                                                hint: "check \(variable), or name \(host) in NO_PROXY to go direct"), true)
        default:
            return nil
        }
    }

    private static func shortSocketError(_ text: String) -> String {
        text.lowercased().contains("refused") ? "connection refused" : String(text.prefix(200))
    }
}
