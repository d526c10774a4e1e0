/// Everything that can go wrong reading a cluster: the kubeconfig, the API server, the
/// Deckhouse objects. Each message says what failed and what to do; none contains a token,
/// password or key.
public enum ClusterError: Error, CustomStringConvertible, Sendable, Equatable {
    /// No kubeconfig file could be found (exit 2).
    case kubeconfigNotFound(String)
    /// The kubeconfig is malformed or lacks a field (exit 2).
    case invalidKubeconfig(path: String, message: String)
    /// The kubeconfig's user authenticates in a way dkp-mirror does not support (exit 2).
    case unsupportedAuthentication(path: String, message: String)
    /// The user's credentials could not be had now: an exec plugin failed, an id-token expired (exit 1).
    case credentialsUnavailable(path: String, message: String)
    /// 401 from the API server.
    case unauthorized(server: String, user: String, path: String, detail: String)
    /// 403 from the API server.
    case forbidden(server: String, user: String, what: String, detail: String)
    /// 404 from the API server, with a hint of what it means.
    case notFound(what: String, hint: String)
    /// The API server cannot be reached, or TLS with it failed.
    case cannotConnect(server: String, detail: String, hint: String)
    /// Another status, or a body that is not the object expected.
    case unexpectedResponse(what: String, detail: String)
    /// The Deckhouse version (image tag) cannot be told.
    case noTag(String)
    /// No way of telling the edition worked; each entry says what was tried and why it failed.
    case noEdition(tried: [String])

    public var description: String {
        switch self {
        case let .kubeconfigNotFound(message):
            return message
        case let .invalidKubeconfig(path, message), let .unsupportedAuthentication(path, message), let .credentialsUnavailable(path, message):
            return "kubeconfig \(path): \(message)"
        case let .unauthorized(server, user, path, detail):
            return "the API server \(server) refused the credentials of kubeconfig user '\(user)' (401 Unauthorized\(detail.isEmpty ? "" : ": \(detail)")); the token or client certificate in \(path) is wrong or expired: get a fresh kubeconfig"
        case let .forbidden(server, user, what, detail):
            return "the API server \(server) does not let kubeconfig user '\(user)' read \(what) (403 Forbidden\(detail.isEmpty ? "" : ": \(detail)")); use a kubeconfig with read access to it (e.g. the cluster admin's)"
        case let .notFound(what, hint):
            return "\(what) not found\(hint.isEmpty ? "" : ": \(hint)")"
        case let .cannotConnect(server, detail, hint):
            return "cannot reach the API server \(server): \(detail); \(hint)"
        case let .unexpectedResponse(what, detail):
            return "unexpected answer for \(what): \(detail)"
        case let .noTag(message):
            return message
        case let .noEdition(tried):
            return "cannot tell the cluster's Deckhouse edition; tried: " + tried.enumerated().map { "(\($0.offset + 1)) \($0.element)" }.joined(separator: "; ")
        }
    }

    /// Bad input (a missing or malformed kubeconfig) rather than a failed operation: the CLI exits 2.
    public var isUsageError: Bool {
        switch self {
        case .kubeconfigNotFound, .invalidKubeconfig, .unsupportedAuthentication: return true
        default: return false
        }
    }
}
