import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import Network
import NIOCore

/// The exchange with a registry's token service (the `realm` of a Bearer challenge): one GET
/// with the credentials, retried under the enclosing operation's budget when the service
/// fails in a way that may pass (a cut connection, a timeout, 408, 429 with its `Retry-After`,
/// 5xx), and following its redirects (Harbor behind a proxy that sends http:// to https://),
/// the credentials only to the realm's own host name and never to plain HTTP after HTTPS (as
/// Go's client keeps `Authorization` on redirects within a host). A 401 or 403 is final.
struct TokenService: Sendable {
    /// The registry the tokens are for (errors name it).
    let host: String
    let configuration: RegistryConfiguration
    let clients: HTTPClients
    let statistics: NIOLockedValueBox<TransferStatistics>

    /// Largest token response read (tokens are small; a huge answer is refused).
    static let maxResponse = 1 << 20

    struct Granted {
        var value: String
        var lifetime: Duration
    }

    /// What one GET of the token service came to.
    private enum Answer {
        case granted(Granted)
        case redirect(String)
        /// A failure that may pass on another try, and how long the service asked to wait.
        case retriable(Error, retryAfter: Duration?)
    }

    func fetch(realm: String, service: String?, scopes: [String]) async throws -> Granted {
        let first = try url(realm: realm, service: service, scopes: scopes)
        // The operation that needs the token (a request, an upload) lends its budget; the
        // fetch runs in a task of its own, which inherits it.
        let budget = RetryBudget.current ?? RetryBudget(attempts: configuration.maxAttempts)
        var url = first
        var redirects = 0
        while true {
            try Task.checkCancellation()
            switch try await ask(url, withCredentials: Self.keepsCredentials(from: first, to: url)) {
            case let .granted(granted):
                return granted
            case let .redirect(next):
                redirects += 1
                guard redirects <= 5 else {
                    throw RegistryError.invalidResponse(what: "the token service of \(host)", detail: "more than 5 redirects")
                }
                url = next
            case let .retriable(error, retryAfter):
                guard let retry = budget.retry() else { throw error }
                configuration.logger.info("token for \(host): \(Transport.brief(error)); retrying (\(budget.describe(retry)))")
                statistics.withLockedValue { $0.retries += 1 }
                try await Task.sleep(for: Transport.backoffDelay(attempt: retry, retryAfter: retryAfter, configuration: configuration))
            }
        }
    }

    static func keepsCredentials(from realm: String, to url: String) -> Bool {
        guard let from = URLComponents(string: realm), let to = URLComponents(string: url) else { return false }
        let downgrade = from.scheme?.lowercased() == "https" && to.scheme?.lowercased() != "https"
        return from.host?.lowercased() == to.host?.lowercased() && !downgrade
    }

    private func url(realm: String, service: String?, scopes: [String]) throws -> String {
        guard var components = URLComponents(string: realm), components.scheme != nil else {
            throw RegistryError.invalidResponse(what: "the token service of \(host)", detail: "unusable realm URL in the challenge")
        }
        var query = components.queryItems ?? []
        if let service { query.append(URLQueryItem(name: "service", value: service)) }
        for scope in scopes { query.append(URLQueryItem(name: "scope", value: scope)) }
        components.queryItems = query.isEmpty ? nil : query
        // '+' in a scope would read as a space on the server side.
        components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        guard let url = components.string else {
            throw RegistryError.invalidResponse(what: "the token service of \(host)", detail: "unusable realm URL")
        }
        return url
    }

    private func ask(_ url: String, withCredentials: Bool) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "User-Agent", value: Transport.userAgent)
        if withCredentials, let credential = configuration.credential {
            request.headers.add(name: "Authorization", value: credential.basicAuthorization)
        }
        let serviceHost = URLComponents(string: url)?.host ?? host
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await clients.client(for: url).execute(request, deadline: .now() + .seconds(Int64(configuration.idleTimeout.components.seconds) * 2))
            body = try await response.body.collect(upTo: Self.maxResponse)
        } catch is NIOTooManyBytesError {
            throw RegistryError.tooLarge(what: "the token response of \(host)", limit: Self.maxResponse)
        } catch {
            let failure = Transport.classify(error, host: serviceHost, configuration: configuration, proxy: clients.proxy(for: url))
            if failure.retriable { return .retriable(failure.error, retryAfter: nil) }
            throw failure.error
        }
        let status = Int(response.status.code)
        switch status {
        case 200:
            return .granted(try Self.decode(body, host: host))
        case 301, 302, 303, 307, 308:
            guard let location = response.headers.first(name: "Location"), let next = Transport.resolve(location, against: url) else {
                throw RegistryError.invalidResponse(what: "the token service of \(host)", detail: "a redirect without a usable Location")
            }
            return .redirect(next)
        case 401 where !withCredentials && configuration.credential != nil, 403 where !withCredentials && configuration.credential != nil:
            throw RegistryError.unauthorized(host: host, user: configuration.credential?.username,
                                             detail: "the token service redirected to \(Transport.redact(url)), another host, where the credentials are not sent; it answered \(status)",
                                             hint: "have the token service name its own address (Harbor: its external URL)")
        case 401, 403:
            throw RegistryError.unauthorized(host: host, user: configuration.credential?.username,
                                             detail: "the token service answered \(status)", hint: Authenticator.credentialHint(configuration))
        default:
            let error = RegistryError.http(method: "GET", url: Transport.redact(url), status: status, detail: Transport.errorDetail(body))
            guard error.mayPassOnRetry else { throw error }
            return .retriable(error, retryAfter: response.headers.first(name: "Retry-After").flatMap(Transport.parseRetryAfter))
        }
    }

    private static func decode(_ body: ByteBuffer, host: String) throws -> Granted {
        struct Reply: Decodable {
            var token: String?
            var access_token: String?
            var expires_in: Int?
        }
        guard let reply = try? JSONDecoder().decode(Reply.self, from: Data(body.readableBytesView)),
              let value = reply.token ?? reply.access_token, !value.isEmpty else {
            throw RegistryError.invalidResponse(what: "the token service of \(host)", detail: "no token in the answer")
        }
        // Refresh a little early; the spec's default lifetime is 60 seconds.
        return Granted(value: value, lifetime: .seconds(max(1, (reply.expires_in ?? 60) - 10)))
    }
}
