import Foundation

/// The credentials of a kubeconfig user. Any combination may be set (kubectl sends a
/// client certificate during TLS and a token header together). Never printed.
public struct KubeCredentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public var token: String?
    public var clientCertificatePEM: [UInt8]?
    public var clientKeyPEM: [UInt8]?
    public var basic: Credentials?
    /// A credential plugin still to run (`Kubeconfig.resolvingCredentials()` runs it).
    public var exec: ExecCredentialPlugin?
    /// The legacy oidc auth-provider, whose id-token `resolvingCredentials()` takes while it is valid.
    public var oidc: OIDCAuthProvider?
    /// When the token stops being valid, as the exec plugin (`expirationTimestamp`) or the
    /// id-token (`exp`) says; nil when nothing says.
    public var expires: Date?

    /// A username and password (basic auth); `description` hides the password.
    public struct Credentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
        public var username: String
        public var password: String
        public init(username: String, password: String) {
            self.username = username
            self.password = password
        }
        public var description: String { "\(username):****" }
        public var debugDescription: String { description }
    }

    public init(token: String? = nil, clientCertificatePEM: [UInt8]? = nil, clientKeyPEM: [UInt8]? = nil,
                basic: Credentials? = nil) {
        self.token = token
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.basic = basic
    }

    public var hasAny: Bool { token != nil || clientCertificatePEM != nil || basic != nil }

    /// What kinds of credentials are set, e.g. `token, client certificate`, or `anonymous`.
    public var kinds: String {
        var kinds: [String] = []
        if token != nil { kinds.append("token") }
        if clientCertificatePEM != nil { kinds.append("client certificate") }
        if let basic { kinds.append("basic auth as \(basic.username)") }
        if let exec { kinds.append("exec plugin '\(exec.command)'") }
        if oidc != nil { kinds.append("oidc auth-provider") }
        return kinds.isEmpty ? "anonymous" : kinds.joined(separator: ", ")
    }

    public var description: String { "credentials(\(kinds))" }
    public var debugDescription: String { description }
}

/// The subset of the kubeconfig schema dkp-mirror reads; every field optional so that a
/// missing one is reported by name rather than as a decoding failure.
struct KubeconfigFile: Decodable {
    var currentContext: String?
    var clusters: [NamedCluster]?
    var contexts: [NamedContext]?
    var users: [NamedUser]?

    enum CodingKeys: String, CodingKey {
        case currentContext = "current-context"
        case clusters, contexts, users
    }

    /// The files of `$KUBECONFIG` as kubectl merges them: the first file that sets
    /// `current-context` gives it, and the first that defines a cluster, context or user of a
    /// name gives that entry (later ones of the same name are dropped).
    static func merged(_ files: [KubeconfigFile]) -> KubeconfigFile {
        func firstOfEachName<Entry>(_ entries: [Entry], name: (Entry) -> String?) -> [Entry] {
            var seen = Set<String>()
            return entries.filter { entry in name(entry).map { seen.insert($0).inserted } ?? true }
        }
        var merged = KubeconfigFile()
        merged.currentContext = files.lazy.compactMap(\.currentContext).first { !$0.isEmpty }
        merged.clusters = firstOfEachName(files.flatMap { $0.clusters ?? [] }, name: \.name)
        merged.contexts = firstOfEachName(files.flatMap { $0.contexts ?? [] }, name: \.name)
        merged.users = firstOfEachName(files.flatMap { $0.users ?? [] }, name: \.name)
        return merged
    }

    struct NamedCluster: Decodable {
        var name: String?
        var cluster: Cluster?
        /// The file that defined the entry, when several were merged (not in the YAML).
        var file: String?

        enum CodingKeys: String, CodingKey { case name, cluster }
    }

    struct Cluster: Decodable {
        var server: String?
        var certificateAuthorityData: String?
        var certificateAuthority: String?
        var insecureSkipTLSVerify: Bool?
        var proxyURL: String?

        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthorityData = "certificate-authority-data"
            case certificateAuthority = "certificate-authority"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
            case proxyURL = "proxy-url"
        }
    }

    struct NamedContext: Decodable {
        var name: String?
        var context: Context?
        /// The file that defined the entry, when several were merged (not in the YAML).
        var file: String?

        enum CodingKeys: String, CodingKey { case name, context }
    }

    struct Context: Decodable {
        var cluster: String?
        var user: String?
        var namespace: String?
    }

    struct NamedUser: Decodable {
        var name: String?
        var user: User?
        /// The file that defined the entry, when several were merged (not in the YAML).
        var file: String?

        enum CodingKeys: String, CodingKey { case name, user }
    }

    struct User: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificateData: String?
        var clientKeyData: String?
        var clientCertificate: String?
        var clientKey: String?
        var username: String?
        var password: String?
        var exec: Exec?
        var authProvider: AuthProvider?

        init() {}

        enum CodingKeys: String, CodingKey {
            case token, tokenFile, username, password, exec
            case clientCertificateData = "client-certificate-data"
            case clientKeyData = "client-key-data"
            case clientCertificate = "client-certificate"
            case clientKey = "client-key"
            case authProvider = "auth-provider"
        }
    }

    struct Exec: Decodable {
        struct Variable: Decodable { var name: String?; var value: String? }
        var command: String?
        var args: [String]?
        var env: [Variable]?
        var apiVersion: String?
        var installHint: String?
        var interactiveMode: String?
        var provideClusterInfo: Bool?
    }

    struct AuthProvider: Decodable {
        var name: String?
        var config: [String: String]?

        enum CodingKeys: String, CodingKey { case name, config }

        // A provider's config that is not all strings (another provider's) does not make the kubeconfig unreadable.
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decodeIfPresent(String.self, forKey: .name)
            config = try? container.decodeIfPresent([String: String].self, forKey: .config)
        }
    }
}
