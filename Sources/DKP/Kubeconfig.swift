import Foundation
import Network
import Yams

/// How to reach one Kubernetes API server, resolved from a kubeconfig file: the selected
/// context's cluster (server, trust) and user (credentials). File references in the
/// kubeconfig (`certificate-authority`, `client-certificate`, `client-key`, `tokenFile`) are
/// read when it is loaded, so a missing file is reported with the kubeconfig that names it.
///
/// `description` never shows a secret (token, password, client key).
public struct Kubeconfig: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The file this came from.
    public var path: String
    public var contextName: String
    public var clusterName: String
    /// The kubeconfig user name (not a Kubernetes identity; it names the entry in `users`).
    public var userName: String
    /// `https://api.example.com:6443` (a path prefix, as proxies use, is kept).
    public var server: String
    /// PEM of the CA(s) to trust for the API server instead of the system's, when set.
    public var certificateAuthorityPEM: [UInt8]?
    /// Where the CA came from, for errors: `certificate-authority-data` or the file path.
    public var certificateAuthoritySource: String?
    public var insecureSkipTLSVerify: Bool
    public var credentials: KubeCredentials
    /// The cluster's `proxy-url`: every request to the API server goes through it (as kubectl
    /// does), whatever the proxy variables say.
    public var proxy: ProxyEndpoint?

    public init(path: String, contextName: String, clusterName: String, userName: String, server: String,
                certificateAuthorityPEM: [UInt8]? = nil, certificateAuthoritySource: String? = nil,
                insecureSkipTLSVerify: Bool = false, credentials: KubeCredentials = KubeCredentials(),
                proxy: ProxyEndpoint? = nil) {
        self.path = path
        self.contextName = contextName
        self.clusterName = clusterName
        self.userName = userName
        self.server = server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.certificateAuthoritySource = certificateAuthoritySource
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.credentials = credentials
        self.proxy = proxy
    }

    public var description: String {
        "Kubeconfig(\(path), context \(contextName), cluster \(clusterName) at \(server), user \(userName): \(credentials))"
    }

    public var debugDescription: String { description }

    // MARK: Finding the file

    /// The kubeconfig file to use: `explicitPath` if given, else the first existing file of
    /// `$KUBECONFIG` (a ':'-separated list), else `~/.kube/config`. Throws
    /// `ClusterError.kubeconfigNotFound` saying what was looked at.
    public static func locate(explicitPath: String? = nil,
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        let files = FileManager.default
        if let explicitPath {
            let path = expandTilde(explicitPath, environment: environment)
            var isDirectory: ObjCBool = false
            guard files.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw ClusterError.kubeconfigNotFound("kubeconfig \(explicitPath) does not exist; pass --kubeconfig with the path of the cluster's kubeconfig")
            }
            guard !isDirectory.boolValue else {
                throw ClusterError.kubeconfigNotFound("kubeconfig \(explicitPath) is a directory; pass --kubeconfig with the path of a kubeconfig file")
            }
            return path
        }
        if let list = environment["KUBECONFIG"], !list.trimmingCharacters(in: .whitespaces).isEmpty {
            let candidates = list.split(separator: ":", omittingEmptySubsequences: true).map { expandTilde(String($0), environment: environment) }
            for candidate in candidates {
                var isDirectory: ObjCBool = false
                if files.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue {
                    return candidate
                }
            }
            throw ClusterError.kubeconfigNotFound("no file of $KUBECONFIG exists (\(candidates.joined(separator: ", "))); fix KUBECONFIG or pass --kubeconfig PATH")
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        let path = home + "/.kube/config"
        guard files.fileExists(atPath: path) else {
            throw ClusterError.kubeconfigNotFound("no kubeconfig found: \(path) does not exist and KUBECONFIG is not set; pass --kubeconfig PATH or set KUBECONFIG")
        }
        return path
    }

    /// Locates (see `locate`) and loads a kubeconfig, selecting `context` or else the file's
    /// `current-context`.
    public static func load(path: String? = nil, context: String? = nil,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Kubeconfig {
        let file = try locate(explicitPath: path, environment: environment)
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw ClusterError.invalidKubeconfig(path: file, message: "cannot be read (\(Self.shortReason(error))); check its permissions")
        }
        return try Kubeconfig(yaml: String(decoding: data, as: UTF8.self), path: file, context: context, environment: environment)
    }

    // MARK: Parsing

    /// Parses kubeconfig YAML. `path` names the file in errors and anchors relative file
    /// references (as kubectl resolves them: against the kubeconfig's directory).
    public init(yaml: String, path: String, context: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        func fail(_ message: String) -> ClusterError { .invalidKubeconfig(path: path, message: message) }

        guard !yaml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw fail("is empty; use the kubeconfig of the cluster (e.g. /etc/kubernetes/admin.conf on a master)")
        }
        let file: KubeconfigFile
        do {
            file = try YAMLDecoder().decode(KubeconfigFile.self, from: yaml)
        } catch let error as DecodingError {
            throw fail(Self.describe(error))
        } catch {
            throw fail("is not valid YAML (\(Self.shortReason(error)))")
        }

        let contexts = file.contexts ?? []
        let contextName: String
        if let context {
            contextName = context
        } else if let current = file.currentContext, !current.isEmpty {
            contextName = current
        } else if contexts.count == 1, let only = contexts[0].name {
            contextName = only
        } else {
            let names = contexts.compactMap(\.name)
            throw fail("has no current-context; pass --context NAME\(names.isEmpty ? " (it defines no contexts either)" : " (contexts: \(names.joined(separator: ", ")))")")
        }
        guard let contextEntry = contexts.first(where: { $0.name == contextName }) else {
            let names = contexts.compactMap(\.name)
            throw fail("has no context '\(contextName)'\(names.isEmpty ? "" : " (contexts: \(names.joined(separator: ", ")))")\(context != nil ? "; pass --context with one of them" : "; fix current-context or pass --context")")
        }
        guard let clusterName = contextEntry.context?.cluster, !clusterName.isEmpty else {
            throw fail("context '\(contextName)' has no field context.cluster")
        }
        guard let clusterEntry = file.clusters?.first(where: { $0.name == clusterName }) else {
            throw fail("context '\(contextName)' names cluster '\(clusterName)', which is not in clusters")
        }
        guard let cluster = clusterEntry.cluster else {
            throw fail("cluster '\(clusterName)' has no field cluster")
        }
        guard let server = cluster.server?.trimmingCharacters(in: .whitespaces), !server.isEmpty else {
            throw fail("cluster '\(clusterName)' has no field cluster.server")
        }
        guard let url = URL(string: server), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = url.host, !host.isEmpty else {
            throw fail("cluster '\(clusterName)' has server '\(server)', which is not an https:// (or http://) URL")
        }
        var proxy: ProxyEndpoint?
        if let proxyURL = cluster.proxyURL, !proxyURL.isEmpty {
            do {
                proxy = try ProxyEndpoint.parse(proxyURL, source: "proxy-url")
            } catch let error as NetworkSettingsError {
                throw fail("cluster '\(clusterName)': \(error)")
            }
        }

        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        func resolve(_ reference: String) -> String {
            let expanded = Self.expandTilde(reference, environment: environment)
            return expanded.hasPrefix("/") ? expanded : directory + "/" + expanded
        }
        func readFile(_ reference: String, field: String, owner: String) throws -> [UInt8] {
            let full = resolve(reference)
            guard let data = FileManager.default.contents(atPath: full) else {
                throw fail("\(owner) field \(field) names \(full), which does not exist or cannot be read")
            }
            return Array(data)
        }
        func decodeBase64(_ text: String, field: String, owner: String) throws -> [UInt8] {
            let cleaned = text.filter { !$0.isWhitespace }
            guard let data = Data(base64Encoded: cleaned), !data.isEmpty else {
                throw fail("\(owner) field \(field) is not valid base64")
            }
            return Array(data)
        }

        // Cluster trust.
        var caPEM: [UInt8]?
        var caSource: String?
        let clusterOwner = "cluster '\(clusterName)'"
        if let data = cluster.certificateAuthorityData, !data.isEmpty {
            caPEM = try decodeBase64(data, field: "certificate-authority-data", owner: clusterOwner)
            caSource = "certificate-authority-data of cluster '\(clusterName)'"
        } else if let file = cluster.certificateAuthority, !file.isEmpty {
            caPEM = try readFile(file, field: "certificate-authority", owner: clusterOwner)
            caSource = "certificate-authority \(resolve(file)) of cluster '\(clusterName)'"
        }

        // User credentials.
        let userName = contextEntry.context?.user ?? ""
        var credentials = KubeCredentials()
        if !userName.isEmpty {
            guard let userEntry = file.users?.first(where: { $0.name == userName }) else {
                throw fail("context '\(contextName)' names user '\(userName)', which is not in users")
            }
            let user = userEntry.user ?? KubeconfigFile.User()
            let owner = "user '\(userName)'"
            if let token = user.token, !token.isEmpty {
                credentials.token = token.trimmingCharacters(in: .whitespacesAndNewlines)
            } else if let tokenFile = user.tokenFile, !tokenFile.isEmpty {
                let bytes = try readFile(tokenFile, field: "tokenFile", owner: owner)
                let token = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                guard !token.isEmpty else { throw fail("\(owner) field tokenFile names \(resolve(tokenFile)), which is empty") }
                credentials.token = token
            }

            var certificate: [UInt8]?
            var key: [UInt8]?
            if let data = user.clientCertificateData, !data.isEmpty {
                certificate = try decodeBase64(data, field: "client-certificate-data", owner: owner)
            } else if let file = user.clientCertificate, !file.isEmpty {
                certificate = try readFile(file, field: "client-certificate", owner: owner)
            }
            if let data = user.clientKeyData, !data.isEmpty {
                key = try decodeBase64(data, field: "client-key-data", owner: owner)
            } else if let file = user.clientKey, !file.isEmpty {
                key = try readFile(file, field: "client-key", owner: owner)
            }
            switch (certificate, key) {
            case let (certificate?, key?):
                credentials.clientCertificatePEM = certificate
                credentials.clientKeyPEM = key
            case (.some, nil):
                throw fail("\(owner) has a client certificate but no field client-key-data (or client-key)")
            case (nil, .some):
                throw fail("\(owner) has a client key but no field client-certificate-data (or client-certificate)")
            case (nil, nil):
                break
            }

            if let username = user.username, !username.isEmpty {
                guard let password = user.password else {
                    throw fail("\(owner) has field username but no field password")
                }
                credentials.basic = KubeCredentials.Credentials(username: username, password: password)
            }

            if !credentials.hasAny {
                if let exec = user.exec {
                    let command = exec.command.map { " (command '\($0)')" } ?? ""
                    throw ClusterError.unsupportedAuthentication(path: path, message: "user '\(userName)' authenticates through an exec plugin\(command), which dkp-mirror does not run; use a kubeconfig whose user has a token or a client certificate (e.g. /etc/kubernetes/admin.conf from a master, or a ServiceAccount token from `kubectl create token`)")
                }
                if let provider = user.authProvider {
                    let name = provider.name.map { " '\($0)'" } ?? ""
                    throw ClusterError.unsupportedAuthentication(path: path, message: "user '\(userName)' authenticates through auth-provider\(name), which dkp-mirror does not support; use a kubeconfig whose user has a token or a client certificate (e.g. /etc/kubernetes/admin.conf from a master, or a ServiceAccount token from `kubectl create token`)")
                }
            }
        }

        self.init(path: path, contextName: contextName, clusterName: clusterName,
                  userName: userName.isEmpty ? "(none)" : userName,
                  server: server.hasSuffix("/") ? String(server.dropLast()) : server,
                  certificateAuthorityPEM: caPEM, certificateAuthoritySource: caSource,
                  insecureSkipTLSVerify: cluster.insecureSkipTLSVerify ?? false,
                  credentials: credentials, proxy: proxy)
    }

    // MARK: Helpers

    static func expandTilde(_ path: String, environment: [String: String]) -> String {
        guard path == "~" || path.hasPrefix("~/") else { return path }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + path.dropFirst()
    }

    static func shortReason(_ error: Error) -> String {
        let text = (error as? LocalizedError)?.errorDescription ?? String(describing: error)
        return String(text.prefix(200))
    }

    /// A decoding error as "field X: problem", with the YAML path written kubectl-style.
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [CodingKey]) -> String {
            var out = ""
            for key in keys {
                if let index = key.intValue {
                    out += "[\(index)]"
                } else {
                    out += out.isEmpty ? key.stringValue : ".\(key.stringValue)"
                }
            }
            return out.isEmpty ? "(top level)" : out
        }
        switch error {
        case let .typeMismatch(type, context):
            return "field \(path(context.codingPath)) has the wrong type (expected \(Self.typeName(type)))"
        case let .valueNotFound(type, context):
            return "field \(path(context.codingPath)) is missing (expected \(Self.typeName(type)))"
        case let .keyNotFound(key, context):
            return "field \(path(context.codingPath + [key])) is missing"
        case let .dataCorrupted(context):
            if context.codingPath.isEmpty {
                return "is not valid YAML (\(String(context.debugDescription.prefix(200))))"
            }
            return "field \(path(context.codingPath)) is invalid (\(String(context.debugDescription.prefix(200))))"
        @unknown default:
            return "cannot be parsed"
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is [Any].Type: return "a list"
        default:
            let name = String(describing: type)
            // Yams reports its node kinds (`Sequence`, `Mapping`) rather than the Swift type.
            if name.hasPrefix("Array") || name.contains("Sequence") { return "a list" }
            if name.contains("Scalar") { return "a single value" }
            return "a mapping"
        }
    }
}

/// The credentials of a kubeconfig user. Any combination may be set (kubectl sends a
/// client certificate during TLS and a token header together). Never printed.
public struct KubeCredentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public var token: String?
    public var clientCertificatePEM: [UInt8]?
    public var clientKeyPEM: [UInt8]?
    public var basic: Credentials?

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

    struct NamedCluster: Decodable {
        var name: String?
        var cluster: Cluster?
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
    }

    struct Context: Decodable {
        var cluster: String?
        var user: String?
        var namespace: String?
    }

    struct NamedUser: Decodable {
        var name: String?
        var user: User?
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
        var command: String?
    }

    struct AuthProvider: Decodable {
        var name: String?
    }
}
