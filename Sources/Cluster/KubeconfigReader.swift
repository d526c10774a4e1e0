import Foundation
import Network
import Yams

extension Kubeconfig {
    /// Parses kubeconfig YAML. `path` names the file in errors and anchors relative file
    /// references (as kubectl resolves them: against the kubeconfig's directory).
    public init(yaml: String, path: String, context: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let file = try KubeconfigReader(path: path, environment: environment).decode(yaml)
        try self.init(file: file, path: path, context: context, environment: environment)
    }

    /// From a decoded kubeconfig (one file, or the merge of `$KUBECONFIG`'s, named `path`).
    init(file: KubeconfigFile, path: String, context: String?, environment: [String: String]) throws {
        // Errors about one entry name the file that defined it; the others name `path`.
        let reader = KubeconfigReader(path: path, environment: environment)
        let (contextName, contextEntry) = try reader.selectContext(context, in: file)
        let (clusterName, clusterEntry) = try reader.cluster(of: contextName, contextEntry, in: file)
        let clusterReader = reader.reading(clusterEntry.file)
        guard let cluster = clusterEntry.cluster else {
            throw clusterReader.fail("cluster '\(clusterName)' has no field cluster")
        }
        let server = try clusterReader.server(of: clusterName, cluster)
        let proxy = try clusterReader.proxy(of: clusterName, cluster)
        let trust = try clusterReader.trust(of: clusterName, cluster)
        let userName = contextEntry.context?.user ?? ""
        let credentials: KubeCredentials
        if userName.isEmpty {
            credentials = KubeCredentials()
        } else {
            let userEntry = try reader.user(userName, context: contextName, in: file)
            credentials = try reader.reading(userEntry.file).credentials(of: userEntry)
        }
        self.init(path: path, contextName: contextName, clusterName: clusterName,
                  userName: userName.isEmpty ? "(none)" : userName,
                  server: server.hasSuffix("/") ? String(server.dropLast()) : server,
                  certificateAuthorityPEM: trust?.pem, certificateAuthoritySource: trust?.source,
                  insecureSkipTLSVerify: cluster.insecureSkipTLSVerify ?? false,
                  credentials: credentials, proxy: proxy)
    }
}

/// The steps of reading one kubeconfig file, each failing with a message that names the
/// context, cluster or user and the field at fault.
struct KubeconfigReader {
    let path: String
    let environment: [String: String]

    func fail(_ message: String) -> ClusterError { .invalidKubeconfig(path: path, message: message) }

    /// The reader of the file that defined an entry (`file`), or this one.
    func reading(_ file: String?) -> KubeconfigReader {
        file.map { KubeconfigReader(path: $0, environment: environment) } ?? self
    }

    func decode(_ yaml: String) throws -> KubeconfigFile {
        guard let file = try decodeUnlessEmpty(yaml) else {
            throw fail("is empty; use the kubeconfig of the cluster (e.g. /etc/kubernetes/admin.conf on a master)")
        }
        return file
    }

    /// nil for a file of nothing but whitespace, comments or a bare `---`, which kubectl reads
    /// as empty. The YAML is parsed once.
    func decodeUnlessEmpty(_ yaml: String) throws -> KubeconfigFile? {
        do {
            guard let node = try Yams.compose(yaml: yaml) else { return nil }
            if case let .scalar(scalar) = node, ["", "~", "null"].contains(scalar.string) { return nil }
            return try YAMLDecoder().decode(KubeconfigFile.self, from: node)
        } catch let error as DecodingError {
            throw fail(Self.describe(error))
        } catch {
            throw fail("is not valid YAML (\(Kubeconfig.shortReason(error)))")
        }
    }

    /// `requested`, else the file's `current-context`, else its only context.
    func selectContext(_ requested: String?, in file: KubeconfigFile) throws -> (String, KubeconfigFile.NamedContext) {
        let contexts = file.contexts ?? []
        let names = contexts.compactMap(\.name)
        let contextName: String
        if let requested {
            contextName = requested
        } else if let current = file.currentContext, !current.isEmpty {
            contextName = current
        } else if contexts.count == 1, let only = contexts[0].name {
            contextName = only
        } else {
            throw fail("has no current-context; pass --context NAME\(names.isEmpty ? " (it defines no contexts either)" : " (contexts: \(names.joined(separator: ", ")))")")
        }
        guard let entry = contexts.first(where: { $0.name == contextName }) else {
            throw fail("has no context '\(contextName)'\(names.isEmpty ? "" : " (contexts: \(names.joined(separator: ", ")))")\(requested != nil ? "; pass --context with one of them" : "; fix current-context or pass --context")")
        }
        return (contextName, entry)
    }

    func cluster(of contextName: String, _ context: KubeconfigFile.NamedContext,
                 in file: KubeconfigFile) throws -> (String, KubeconfigFile.NamedCluster) {
        guard let clusterName = context.context?.cluster, !clusterName.isEmpty else {
            throw reading(context.file).fail("context '\(contextName)' has no field context.cluster")
        }
        guard let entry = file.clusters?.first(where: { $0.name == clusterName }) else {
            throw fail("context '\(contextName)' names cluster '\(clusterName)', which is not in clusters")
        }
        return (clusterName, entry)
    }

    func server(of clusterName: String, _ cluster: KubeconfigFile.Cluster) throws -> String {
        guard let server = cluster.server?.trimmingCharacters(in: .whitespaces), !server.isEmpty else {
            throw fail("cluster '\(clusterName)' has no field cluster.server")
        }
        guard let url = URL(string: server), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = url.host, !host.isEmpty else {
            throw fail("cluster '\(clusterName)' has server '\(server)', which is not an https:// (or http://) URL")
        }
        return server
    }

    func proxy(of clusterName: String, _ cluster: KubeconfigFile.Cluster) throws -> ProxyEndpoint? {
        guard let proxyURL = cluster.proxyURL, !proxyURL.isEmpty else { return nil }
        do {
            return try ProxyEndpoint.parse(proxyURL, source: "proxy-url")
        } catch let error as NetworkSettingsError {
            throw fail("cluster '\(clusterName)': \(error)")
        }
    }

    /// The cluster's CA, inline or from a file, and where it came from (for errors).
    func trust(of clusterName: String, _ cluster: KubeconfigFile.Cluster) throws -> (pem: [UInt8], source: String)? {
        let owner = "cluster '\(clusterName)'"
        if let data = cluster.certificateAuthorityData, !data.isEmpty {
            return (try decodeBase64(data, field: "certificate-authority-data", owner: owner),
                    "certificate-authority-data of \(owner)")
        }
        if let file = cluster.certificateAuthority, !file.isEmpty {
            return (try readFile(file, field: "certificate-authority", owner: owner),
                    "certificate-authority \(resolve(file)) of \(owner)")
        }
        return nil
    }

    func user(_ userName: String, context contextName: String, in file: KubeconfigFile) throws -> KubeconfigFile.NamedUser {
        guard let entry = file.users?.first(where: { $0.name == userName }) else {
            throw fail("context '\(contextName)' names user '\(userName)', which is not in users")
        }
        return entry
    }

    func credentials(of entry: KubeconfigFile.NamedUser) throws -> KubeCredentials {
        let userName = entry.name ?? ""
        let user = entry.user ?? KubeconfigFile.User()
        let owner = "user '\(userName)'"
        var credentials = KubeCredentials()
        credentials.token = try token(of: user, owner: owner)
        if let (certificate, key) = try clientCertificate(of: user, owner: owner) {
            credentials.clientCertificatePEM = certificate
            credentials.clientKeyPEM = key
        }
        if let username = user.username, !username.isEmpty {
            guard let password = user.password else {
                throw fail("\(owner) has field username but no field password")
            }
            credentials.basic = KubeCredentials.Credentials(username: username, password: password)
        }
        if !credentials.hasAny, let exec = user.exec {
            credentials.exec = try plugin(exec, owner: owner, userName: userName, file: entry.file ?? path)
        }
        if !credentials.hasAny, credentials.exec == nil, let provider = user.authProvider, provider.name == "oidc" {
            credentials.oidc = try oidcProvider(provider.config ?? [:], owner: owner, userName: userName, file: entry.file ?? path)
        }
        if !credentials.hasAny && credentials.exec == nil && credentials.oidc == nil { try refuseUnsupported(user, named: userName) }
        return credentials
    }

    func token(of user: KubeconfigFile.User, owner: String) throws -> String? {
        if let token = user.token, !token.isEmpty {
            return token.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let tokenFile = user.tokenFile, !tokenFile.isEmpty else { return nil }
        let bytes = try readFile(tokenFile, field: "tokenFile", owner: owner)
        let token = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw fail("\(owner) field tokenFile names \(resolve(tokenFile)), which is empty") }
        return token
    }

    /// The client certificate and key, each inline or from a file; one without the other is an error.
    func clientCertificate(of user: KubeconfigFile.User, owner: String) throws -> ([UInt8], [UInt8])? {
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
            return (certificate, key)
        case (.some, nil):
            throw fail("\(owner) has a client certificate but no field client-key-data (or client-key)")
        case (nil, .some):
            throw fail("\(owner) has a client key but no field client-certificate-data (or client-certificate)")
        case (nil, nil):
            return nil
        }
    }

    /// An `exec` entry as kubectl takes it: a command, a known apiVersion, interactiveMode
    /// (required by v1, IfAvailable by default for v1beta1).
    func plugin(_ exec: KubeconfigFile.Exec, owner: String, userName: String, file: String) throws -> ExecCredentialPlugin {
        guard let command = exec.command, !command.isEmpty else { throw fail("\(owner) has an exec plugin without field command") }
        guard let apiVersion = exec.apiVersion, ExecCredentialPlugin.apiVersions.contains(apiVersion) else {
            throw ClusterError.unsupportedAuthentication(path: path, message: "\(owner) has an exec plugin of apiVersion '\(exec.apiVersion ?? "")'; "
                + "dkp-mirror runs \(ExecCredentialPlugin.apiVersions.joined(separator: " and "))")
        }
        let mode = exec.interactiveMode ?? (apiVersion.hasSuffix("v1beta1") ? "IfAvailable" : "")
        guard ["Never", "IfAvailable", "Always"].contains(mode) else {
            throw fail("\(owner)'s exec plugin needs field interactiveMode: Never, IfAvailable or Always (\(apiVersion) requires it)")
        }
        let variables = try (exec.env ?? []).map { variable -> (name: String, value: String) in
            guard let name = variable.name, !name.isEmpty else { throw fail("\(owner)'s exec plugin has an env entry without a name") }
            return (name, variable.value ?? "")
        }
        return ExecCredentialPlugin(command: command, arguments: exec.args ?? [], environment: variables, apiVersion: apiVersion,
                                    installHint: exec.installHint, interactiveMode: mode, provideClusterInfo: exec.provideClusterInfo ?? false,
                                    kubeconfigPath: file, userName: userName)
    }

    /// The oidc auth-provider's config: its id-token, and whether kubectl could refresh it.
    func oidcProvider(_ config: [String: String], owner: String, userName: String, file: String) throws -> OIDCAuthProvider {
        let canRefresh = [config["refresh-token"], config["idp-issuer-url"], config["client-id"]].allSatisfy { !($0 ?? "").isEmpty }
        return OIDCAuthProvider(idToken: config["id-token"], canRefresh: canRefresh, kubeconfigPath: file, userName: userName)
    }

    /// A user with no credentials of ours: say why when it uses a plugin dkp-mirror does not run.
    func refuseUnsupported(_ user: KubeconfigFile.User, named userName: String) throws {
        let instead = "use a kubeconfig whose user has a token or a client certificate (e.g. /etc/kubernetes/admin.conf from a master, or a ServiceAccount token from `kubectl create token`)"
        if let exec = user.exec {
            let command = exec.command.map { " (command '\($0)')" } ?? ""
            throw ClusterError.unsupportedAuthentication(path: path, message: "user '\(userName)' authenticates through an exec plugin\(command), which dkp-mirror does not run; \(instead)")
        }
        if let provider = user.authProvider {
            let name = provider.name.map { " '\($0)'" } ?? ""
            throw ClusterError.unsupportedAuthentication(path: path, message: "user '\(userName)' authenticates through auth-provider\(name), which dkp-mirror does not support; \(instead)")
        }
    }

    // MARK: File references

    /// `file` ready to merge with others: its file references made absolute against this
    /// kubeconfig's directory, each entry marked as defined here (for errors).
    func preparedForMerge(_ file: KubeconfigFile) -> KubeconfigFile {
        func absolute(_ reference: String?) -> String? {
            reference.map { $0.isEmpty ? $0 : resolve($0) }
        }
        var file = file
        file.contexts = file.contexts?.map { entry in
            var entry = entry
            entry.file = path
            return entry
        }
        file.clusters = file.clusters?.map { entry in
            var entry = entry
            entry.file = path
            if var cluster = entry.cluster {
                cluster.certificateAuthority = absolute(cluster.certificateAuthority)
                entry.cluster = cluster
            }
            return entry
        }
        file.users = file.users?.map { entry in
            var entry = entry
            entry.file = path
            if var user = entry.user {
                user.tokenFile = absolute(user.tokenFile)
                user.clientCertificate = absolute(user.clientCertificate)
                user.clientKey = absolute(user.clientKey)
                entry.user = user
            }
            return entry
        }
        return file
    }

    /// A file reference as kubectl resolves it: `~` expanded, relative to the kubeconfig's directory.
    func resolve(_ reference: String) -> String {
        let expanded = Kubeconfig.expandTilde(reference, environment: environment)
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
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

    // MARK: Decoding errors

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
