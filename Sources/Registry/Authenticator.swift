import AsyncHTTPClient
import Network
import Foundation
import NIOCore

/// An access scope for a Bearer token: `repository:<name>:<actions>`.
public struct Scope: Hashable, Sendable, Comparable {
    public var repository: String
    public var actions: [String]

    public static func pull(_ repository: String) -> Scope { Scope(repository: repository, actions: ["pull"]) }
    public static func push(_ repository: String) -> Scope { Scope(repository: repository, actions: ["pull", "push"]) }

    public var string: String { "repository:\(repository):\(actions.joined(separator: ","))" }
    public static func < (a: Scope, b: Scope) -> Bool { a.string < b.string }
}

/// Learns how a registry authenticates (from its `WWW-Authenticate` challenges) and supplies
/// `Authorization` values: Basic credentials, or Bearer tokens fetched from the token service
/// and cached per set of scopes until shortly before they expire. Concurrent requests for the
/// same scopes share one token fetch.
actor Authenticator {
    private enum Method {
        case unknown
        case basic
        case bearer(realm: String, service: String?)
    }

    private struct Token {
        var value: String
        var expires: ContinuousClock.Instant
    }

    private let host: String
    private let credential: Credential?
    private let configuration: RegistryConfiguration
    private let clients: HTTPClients
    private var method = Method.unknown
    private var tokens: [String: Token] = [:]
    private var pending: [String: Task<Token, Error>] = [:]
    /// The scope the registry named in its last challenge, used when a request names none (the ping).
    private var challengeScopes: [String] = []

    /// Largest token response read (tokens are small; a huge answer is refused).
    static let maxTokenResponse = 1 << 20

    init(host: String, configuration: RegistryConfiguration, clients: HTTPClients) {
        self.host = host
        self.credential = configuration.credential
        self.configuration = configuration
        self.clients = clients
    }

    /// The `Authorization` value to send for a request needing `scopes`, or nil when none is known to be needed yet.
    func authorization(for scopes: [Scope]) async throws -> String? {
        switch method {
        case .unknown:
            return nil
        case .basic:
            return credential?.basicAuthorization
        case let .bearer(realm, service):
            return "Bearer " + (try await token(realm: realm, service: service, scopes: scopes).value)
        }
    }

    /// Handles a 401: learns the method from the challenge and forgets a rejected token.
    /// Throws when trying again cannot help (wrong password, no credentials for Basic).
    func challenged(by header: String?, scopes: [Scope], sentAuthorization: String?) throws {
        let challenges = AuthChallenge.parse(header ?? "")
        if let bearer = challenges.first(where: { $0.scheme == "bearer" }), let realm = bearer.realm {
            if let sent = sentAuthorization, sent.hasPrefix("Bearer ") {
                tokens[Self.key(scopes.isEmpty ? challengeScopes : scopes.map(\.string))] = nil
            }
            if scopes.isEmpty, let scope = bearer.scope { challengeScopes = scope.split(separator: " ").map(String.init) }
            method = .bearer(realm: realm, service: bearer.service)
            return
        }
        if challenges.contains(where: { $0.scheme == "basic" }) {
            if sentAuthorization?.hasPrefix("Basic ") == true {
                throw unauthorized(detail: "wrong username or password")
            }
            guard credential != nil else { throw unauthorized(detail: "the registry requires a login") }
            method = .basic
            return
        }
        throw unauthorized(detail: "401 without a usable authentication challenge")
    }

    /// The error for a request that stays unauthorized after authenticating once more.
    func finalUnauthorized(header: String?, sentAuthorization: String? = nil) -> RegistryError {
        if sentAuthorization?.hasPrefix("Basic ") == true { return unauthorized(detail: "wrong username or password") }
        let challenge = AuthChallenge.parse(header ?? "").first
        if let error = challenge?.parameters["error"] {
            return unauthorized(detail: error == "insufficient_scope" ? "no access to the requested repository" : error)
        }
        return unauthorized(detail: credential == nil ? "the registry requires a login" : "access denied")
    }

    func unauthorized(detail: String) -> RegistryError {
        let names = configuration.optionNames
        let hint = credential == nil
            ? "pass \(names.login) and \(names.password) (or log in with docker)"
            : "check \(names.login) and \(names.password)"
        return .unauthorized(host: host, user: credential?.username, detail: detail, hint: hint)
    }

    private static func key(_ scopes: [String]) -> String { scopes.sorted().joined(separator: " ") }

    private func token(realm: String, service: String?, scopes: [Scope]) async throws -> Token {
        let scopeStrings = scopes.isEmpty ? challengeScopes : scopes.map(\.string)
        let key = Self.key(scopeStrings)
        if let cached = tokens[key], cached.expires > .now { return cached }
        if let inFlight = pending[key] { return try await inFlight.value }
        let task = Task { try await self.fetchToken(realm: realm, service: service, scopes: scopeStrings) }
        pending[key] = task
        defer { pending[key] = nil }
        // Ctrl-C cancels the run; the fetch is its own task, so pass that on (every request
        // waiting for this token belongs to the same cancelled run).
        let token = try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
        tokens[key] = token
        return token
    }

    private func fetchToken(realm: String, service: String?, scopes: [String]) async throws -> Token {
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
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "User-Agent", value: Transport.userAgent)
        if let credential { request.headers.add(name: "Authorization", value: credential.basicAuthorization) }

        let response: HTTPClientResponse
        do {
            response = try await clients.client(for: url).execute(request, deadline: .now() + .seconds(Int64(configuration.idleTimeout.components.seconds) * 2))
        } catch {
            throw Transport.classify(error, host: components.host ?? host, configuration: configuration, proxy: clients.proxy(for: url)).error
        }
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: Self.maxTokenResponse)
        } catch is NIOTooManyBytesError {
            throw RegistryError.tooLarge(what: "the token response of \(host)", limit: Self.maxTokenResponse)
        } catch {
            throw Transport.classify(error, host: components.host ?? host, configuration: configuration).error
        }
        switch response.status.code {
        case 200:
            break
        case 401, 403:
            throw unauthorized(detail: "the token service answered \(response.status.code)")
        default:
            throw RegistryError.http(method: "GET", url: Transport.redact(url), status: Int(response.status.code),
                                     detail: Transport.errorDetail(body))
        }
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
        let lifetime = max(1, (reply.expires_in ?? 60) - 10)
        return Token(value: value, expires: .now + .seconds(lifetime))
    }
}
