import AsyncHTTPClient
import Network
import Foundation
import NIOConcurrencyHelpers
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
    private let tokenService: TokenService
    private var method = Method.unknown
    private var tokens: [String: Token] = [:]
    private var pending: [String: Task<Token, Error>] = [:]
    /// The scope the registry named in its last challenge, used when a request names none (the ping).
    private var challengeScopes: [String] = []

    init(host: String, configuration: RegistryConfiguration, clients: HTTPClients,
         statistics: NIOLockedValueBox<TransferStatistics>) {
        self.host = host
        self.credential = configuration.credential
        self.configuration = configuration
        self.tokenService = TokenService(host: host, configuration: configuration, clients: clients, statistics: statistics)
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
    /// `registryDetail` is the registry's own message (Harbor's names the repository and the
    /// action it refused), `scopes` what the token was asked for.
    func finalUnauthorized(header: String?, sentAuthorization: String? = nil,
                           registryDetail: String = "", scopes: [Scope] = []) -> RegistryError {
        if sentAuthorization?.hasPrefix("Basic ") == true { return unauthorized(detail: "wrong username or password") }
        let challenge = AuthChallenge.parse(header ?? "").first
        let error = challenge?.parameters["error"]
        if let credential, sentAuthorization?.hasPrefix("Bearer ") == true, !scopes.isEmpty, error == nil || error == "insufficient_scope" {
            // The token service took the credentials; the token it gave does not cover the request.
            let message = registryDetail.isEmpty ? "" : ": \(registryDetail)"
            let rights = scopes.map { "\($0.actions.joined(separator: " and ")) on \($0.repository)" }.joined(separator: ", ")
            return .unauthorized(host: host, user: credential.username,
                                 detail: "the token service accepted them, but the registry refuses the token for \(rights)\(message)",
                                 hint: "give user '\(credential.username)' the rights to \(rights)"
                                     + (scopes.contains { $0.actions.contains("push") } ? " (on Harbor the project must exist and the user or robot account needs push to it)" : ""))
        }
        if let error {
            return unauthorized(detail: error == "insufficient_scope" ? "no access to the requested repository" : error)
        }
        return unauthorized(detail: credential == nil ? "the registry requires a login" : "access denied")
    }

    func unauthorized(detail: String) -> RegistryError {
        .unauthorized(host: host, user: credential?.username, detail: detail, hint: Self.credentialHint(configuration))
    }

    /// What to do about credentials the registry or its token service refused.
    static func credentialHint(_ configuration: RegistryConfiguration) -> String {
        let names = configuration.optionNames
        return configuration.credential == nil
            ? "pass \(names.login) and \(names.password) (or log in with docker)"
            : "check \(names.login) and \(names.password)"
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
        let granted = try await tokenService.fetch(realm: realm, service: service, scopes: scopes)
        return Token(value: granted.value, expires: .now + granted.lifetime)
    }
}
