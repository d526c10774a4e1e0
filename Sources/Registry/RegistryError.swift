import OCI

/// Everything that can go wrong talking to a registry, each with a message that says what
/// failed and what to do. Messages never contain passwords, tokens or license keys.
public enum RegistryError: Error, CustomStringConvertible, Sendable {
    /// The registry (or its token service) refused the credentials, or none were given.
    case unauthorized(host: String, user: String?, detail: String, hint: String)
    /// Authenticated, but the user may not do this (e.g. push with a read-only user).
    case forbidden(host: String, repository: String, action: String, user: String?, detail: String)
    case notFound(what: String, detail: String)
    case untrustedCertificate(host: String, detail: String, hint: String)
    case tlsFailure(host: String, detail: String, hint: String)
    case cannotConnect(host: String, detail: String, hint: String)
    case timedOut(host: String, detail: String)
    /// An unexpected HTTP status, with the registry's own error code and message.
    case http(method: String, url: String, status: Int, detail: String)
    case digestMismatch(what: String, expected: Digest, actual: Digest)
    case sizeMismatch(what: String, expected: Int64, actual: Int64)
    case tooLarge(what: String, limit: Int)
    case invalidResponse(what: String, detail: String)
    /// Bad input given to the client (an unreadable CA file, a malformed option).
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .unauthorized(host, user, detail, hint):
            let who = user.map { "the credentials of user '\($0)'" } ?? "anonymous access"
            return "\(host) rejected \(who)\(detail.isEmpty ? "" : " (\(detail))"); \(hint)"
        case let .forbidden(host, repository, action, user, detail):
            let who = user.map { "user '\($0)'" } ?? "anonymous access"
            return "\(host) denied \(who) permission to \(action) \(repository)\(detail.isEmpty ? "" : " (\(detail))"); use credentials with \(action) rights"
        case let .notFound(what, detail):
            return "\(what) not found\(detail.isEmpty ? "" : " (\(detail))")"
        case let .untrustedCertificate(host, detail, hint):
            return "the TLS certificate of \(host) is not trusted (\(detail)); \(hint)"
        case let .tlsFailure(host, detail, hint):
            return "TLS with \(host) failed (\(detail)); \(hint)"
        case let .cannotConnect(host, detail, hint):
            return "cannot connect to \(host): \(detail); \(hint)"
        case let .timedOut(host, detail):
            return "\(host) stopped answering: \(detail)"
        case let .http(method, url, status, detail):
            return "\(method) \(url): unexpected status \(status)\(detail.isEmpty ? "" : ": \(detail)")"
        case let .digestMismatch(what, expected, actual):
            return "\(what) does not match its digest: expected \(expected), got \(actual)"
        case let .sizeMismatch(what, expected, actual):
            return "\(what) has the wrong size: expected \(expected) bytes, got \(actual)"
        case let .tooLarge(what, limit):
            return "\(what) is larger than the \(limit)-byte limit; refusing it"
        case let .invalidResponse(what, detail):
            return "invalid response for \(what): \(detail)"
        case let .invalidInput(message):
            return message
        }
    }

    /// Bad input from the user rather than a failed operation (the CLI exits 2 for these).
    public var isUsageError: Bool {
        if case .invalidInput = self { return true }
        return false
    }

    /// The detail of a `cannotConnect` for a name that does not resolve: trying again will not help.
    static let unresolvedHost = "the host name does not resolve"

    /// Whether the whole operation, started again, may pass: the network or a busy registry
    /// failed, not the request. An upload that failed this way starts a new session.
    public var mayPassOnRetry: Bool {
        switch self {
        case .timedOut:
            return true
        case let .cannotConnect(_, detail, _):
            return detail != Self.unresolvedHost
        case let .http(_, _, status, _):
            return status == 408 || status == 429 || (500...599).contains(status)
        default:
            return false
        }
    }
}
