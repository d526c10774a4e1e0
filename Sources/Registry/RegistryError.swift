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

    public var description: String { failure + (hint.map { "; \($0)" } ?? "") }

    /// What failed, on its own (the CLI prints it on one line and `hint` on the next).
    public var failure: String {
        switch self {
        case let .unauthorized(host, user, detail, _):
            let who = user.map { "the credentials of user '\($0)'" } ?? "anonymous access"
            return "\(host) rejected \(who)\(detail.isEmpty ? "" : " (\(detail))")"
        case let .forbidden(host, repository, action, user, detail):
            let who = user.map { "user '\($0)'" } ?? "anonymous access"
            return "\(host) denied \(who) permission to \(action) \(repository)\(detail.isEmpty ? "" : " (\(detail))")"
        case let .notFound(what, detail):
            return "\(what) not found\(detail.isEmpty ? "" : " (\(detail))")"
        case let .untrustedCertificate(host, detail, _):
            return "the TLS certificate of \(host) is not trusted (\(detail))"
        case let .tlsFailure(host, detail, _):
            return "TLS with \(host) failed (\(detail))"
        case let .cannotConnect(host, detail, _):
            return "cannot connect to \(host): \(detail)"
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

    /// What to do about it, where the error's category says (nil for bad input, whose message
    /// already says it).
    public var hint: String? {
        switch self {
        case let .unauthorized(_, _, _, hint), let .untrustedCertificate(_, _, hint), let .tlsFailure(_, _, hint):
            return hint
        case let .cannotConnect(_, detail, hint):
            if detail == Self.unresolvedHost {
                return "\(hint); this machine's DNS cannot resolve it: fix the name, or go through a proxy that can (HTTPS_PROXY, --proxy)"
            }
            return hint
        case let .forbidden(_, _, action, _, _):
            return "use credentials with \(action) rights (to push into the cluster's registry: its read-write user)"
        case .notFound:
            return Self.hint(status: 404)
        case .timedOut:
            return Self.stalledHint
        case let .http(_, _, status, _):
            return Self.hint(status: status)
        case .digestMismatch, .sizeMismatch:
            return "the registry served other bytes than its manifest names (a broken mirror or a caching proxy?): run again; if it repeats, tell the registry's owner"
        case .tooLarge, .invalidResponse:
            return "this is not an OCI registry's answer: check the address, and any proxy in between"
        case .invalidInput:
            return nil
        }
    }

    /// What to do about a registry or network that stopped answering.
    public static let stalledHint = "the registry or the network stalled: run the same command again (it resumes); on a slow link raise --timeout"

    /// What to do about an HTTP status the registry answered.
    public static func hint(status: Int) -> String? {
        switch status {
        case 401: return "check the user and password (-u, --registry-password-stdin, or a docker config)"
        case 403: return "use credentials with the rights this needs (to push: the registry's read-write user)"
        case 404: return "check the address, the edition and the tag; `dkp-mirror tags REPOSITORY` lists the tags a repository has"
        case 408, 429: return "the registry is busy or rate-limiting: wait a little, lower -j, and run the same command again (it resumes)"
        case 400, 409, 412: return "the registry refused the request by its own rules (immutable tags, a policy, a quota?): check its settings"
        case 413: return "something in between limits the request size: lift the limit (ingress-nginx: the annotation nginx.ingress.kubernetes.io/proxy-body-size: \"0\"), "
            + "or pass --upload-chunk-size below it (0.9 for a 1m limit)"
        case 500...599: return "the registry (or a proxy in front of it) failed: check its logs and storage, then run the same command again (it resumes)"
        default: return nil
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
            return Self.mayPassOnRetry(status: status)
        default:
            return false
        }
    }

    /// The statuses another try may pass: 408, 429 and 5xx but 501 (not implemented stays so).
    static func mayPassOnRetry(status: Int) -> Bool {
        status == 408 || status == 429 || ((500...599).contains(status) && status != 501)
    }
}
