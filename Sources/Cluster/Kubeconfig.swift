import Foundation
import Network

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

    /// This kubeconfig with its user's exec plugin run, or its oidc auth-provider's id-token
    /// taken, when it has one. Call it before making a `KubeClient`. The plugin or provider is
    /// kept, so that the client can get a new token when this one expires or is refused.
    public func resolvingCredentials() async throws -> Kubeconfig {
        var resolved = self
        var plugin = credentials.exec
        plugin?.clusterJSON = ExecCredentialPlugin.clusterJSON(of: self)
        if let plugin {
            resolved.credentials = try await plugin.credentials()
        } else if let oidc = credentials.oidc {
            resolved.credentials = try oidc.credentials()
        }
        resolved.credentials.exec = plugin
        resolved.credentials.oidc = credentials.oidc
        return resolved
    }

    // MARK: Finding the file

    /// The kubeconfig file to use: `explicitPath` if given, else the first existing file of
    /// `$KUBECONFIG` (a ':'-separated list), else `~/.kube/config`. Throws
    /// `ClusterError.kubeconfigNotFound` saying what was looked at.
    public static func locate(explicitPath: String? = nil,
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        if let explicitPath {
            let path = expandTilde(explicitPath, environment: environment)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw ClusterError.kubeconfigNotFound("kubeconfig \(explicitPath) does not exist; pass --kubeconfig with the path of the cluster's kubeconfig")
            }
            guard !isDirectory.boolValue else {
                throw ClusterError.kubeconfigNotFound("kubeconfig \(explicitPath) is a directory; pass --kubeconfig with the path of a kubeconfig file")
            }
            return path
        }
        if let candidates = listed(in: environment) {
            guard let first = candidates.first(where: isFile) else {
                throw ClusterError.kubeconfigNotFound("no file of $KUBECONFIG exists (\(candidates.joined(separator: ", "))); fix KUBECONFIG or pass --kubeconfig PATH")
            }
            return first
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        let path = home + "/.kube/config"
        guard FileManager.default.fileExists(atPath: path) else {
            throw ClusterError.kubeconfigNotFound("no kubeconfig found: \(path) does not exist and KUBECONFIG is not set; pass --kubeconfig PATH or set KUBECONFIG")
        }
        return path
    }

    /// Every kubeconfig file to read: `explicitPath` alone if given, else every existing file
    /// of `$KUBECONFIG` in its order (kubectl merges them; missing ones are skipped), else
    /// `~/.kube/config`.
    public static func locateAll(explicitPath: String? = nil,
                                 environment: [String: String] = ProcessInfo.processInfo.environment) throws -> [String] {
        if explicitPath == nil, let existing = listed(in: environment)?.filter(isFile), !existing.isEmpty {
            return existing
        }
        return [try locate(explicitPath: explicitPath, environment: environment)]
    }

    /// Locates (see `locateAll`) and loads a kubeconfig, selecting `context` or else its
    /// `current-context`. Several files of `$KUBECONFIG` are merged as kubectl merges them
    /// (`KubeconfigFile.merged`), each file's relative references read against its own directory.
    public static func load(path: String? = nil, context: String? = nil,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Kubeconfig {
        let files = try locateAll(explicitPath: path, environment: environment)
        if files.count == 1 {
            return try Kubeconfig(yaml: read(files[0]), path: files[0], context: context, environment: environment)
        }
        var parts: [KubeconfigFile] = []
        for file in files {
            let reader = KubeconfigReader(path: file, environment: environment)
            // kubectl passes over an empty file of the list.
            guard let part = try reader.decodeUnlessEmpty(read(file)) else { continue }
            parts.append(reader.preparedForMerge(part))
        }
        guard !parts.isEmpty else {
            // Every file is empty: the first one's error says so.
            return try Kubeconfig(yaml: "", path: files[0], context: context, environment: environment)
        }
        return try Kubeconfig(file: KubeconfigFile.merged(parts), path: files.joined(separator: ":"), context: context,
                              environment: environment)
    }

    /// The candidates of `$KUBECONFIG`, `~` expanded, each once (as kubectl lists them); nil
    /// when it is not set.
    static func listed(in environment: [String: String]) -> [String]? {
        guard let list = environment["KUBECONFIG"], !list.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
        var seen = Set<String>()
        return list.split(separator: ":", omittingEmptySubsequences: true)
            .map { expandTilde(String($0), environment: environment) }
            .filter { seen.insert($0).inserted }
    }

    static func isFile(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
    }

    static func read(_ file: String) throws -> String {
        do {
            return String(decoding: try Data(contentsOf: URL(fileURLWithPath: file)), as: UTF8.self)
        } catch {
            throw ClusterError.invalidKubeconfig(path: file, message: "cannot be read (\(Self.shortReason(error))); check its permissions")
        }
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
}
