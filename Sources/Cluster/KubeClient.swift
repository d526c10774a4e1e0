import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import Network

/// A minimal Kubernetes API client: `GET` of single objects as JSON, with the kubeconfig's
/// TLS trust (CA data or file, or no verification), client certificate and key, bearer token
/// or basic auth. Call `shutdown()` when done.
public final class KubeClient: Sendable {
    public let kubeconfig: Kubeconfig
    /// Direct, or through the kubeconfig's `proxy-url`, else the proxy settings given.
    let clients: HTTPClients
    let requestTimeout: TimeAmount
    /// The token to send, renewed from the exec plugin when it expires or is refused.
    let credentialSource: KubeCredentialSource
    /// Objects read here are small; anything larger is refused.
    static let maxBodySize = 8 << 20

    /// Builds the client. A CA, certificate or key that cannot be loaded is a
    /// `ClusterError.invalidKubeconfig` naming the field.
    /// `proxies` (the environment's, `--proxy`) apply unless the kubeconfig names a `proxy-url`;
    /// `trustRoots` is the system trust used when the kubeconfig gives no CA.
    public init(kubeconfig: Kubeconfig, connectTimeout: Duration = .seconds(10), requestTimeout: Duration = .seconds(30),
                proxies: ProxySettings = .direct, trustRoots: NIOSSLTrustRoots = .default) throws {
        self.kubeconfig = kubeconfig
        self.requestTimeout = TimeAmount(requestTimeout)
        func fail(_ message: String) -> ClusterError { .invalidKubeconfig(path: kubeconfig.path, message: message) }

        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = trustRoots
        if kubeconfig.insecureSkipTLSVerify {
            tls.certificateVerification = .none
        } else if let ca = kubeconfig.certificateAuthorityPEM {
            let source = kubeconfig.certificateAuthoritySource ?? "the certificate authority of cluster '\(kubeconfig.clusterName)'"
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMBytes(ca)
            } catch {
                throw fail("\(source) holds no PEM certificate")
            }
            guard !certificates.isEmpty else { throw fail("\(source) holds no PEM certificate") }
            // Like kubectl: a cluster CA replaces the system's trust store for this server.
            tls.trustRoots = .certificates(certificates)
        }
        let credentials = kubeconfig.credentials
        if let certificatePEM = credentials.clientCertificatePEM, let keyPEM = credentials.clientKeyPEM {
            let owner = "user '\(kubeconfig.userName)'"
            let chain: [NIOSSLCertificate]
            do {
                chain = try NIOSSLCertificate.fromPEMBytes(certificatePEM)
            } catch {
                throw fail("the client certificate of \(owner) is not a PEM certificate")
            }
            guard !chain.isEmpty else { throw fail("the client certificate of \(owner) is not a PEM certificate") }
            let key: NIOSSLPrivateKey
            do {
                key = try NIOSSLPrivateKey(bytes: keyPEM, format: .pem)
            } catch {
                throw fail("the client key of \(owner) is not an unencrypted PEM private key")
            }
            tls.certificateChain = chain.map { .certificate($0) }
            tls.privateKey = .privateKey(key)
        }

        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls,
            redirectConfiguration: .disallow,
            timeout: .init(connect: TimeAmount(connectTimeout), read: TimeAmount(requestTimeout)),
            decompression: .disabled)
        configuration.httpVersion = .http1Only
        // One connection attempt, bounded by connectTimeout, and a clear error; no silent retry loop.
        configuration.connectionPool.retryConnectionEstablishment = false
        let routes = kubeconfig.proxy.map { ProxySettings(httpProxy: $0, httpsProxy: $0) } ?? proxies
        self.clients = HTTPClients(configuration: configuration, proxies: routes)
        self.credentialSource = KubeCredentialSource(credentials)
    }

    /// Closes connections. Required before the client is released.
    public func shutdown() async {
        await clients.shutdown()
    }

    /// Runs `body` with a client and always shuts it down afterwards.
    public static func with<T: Sendable>(kubeconfig: Kubeconfig, proxies: ProxySettings = .direct, trustRoots: NIOSSLTrustRoots = .default,
                                         _ body: (KubeClient) async throws -> T) async throws -> T {
        let client = try KubeClient(kubeconfig: kubeconfig, proxies: proxies, trustRoots: trustRoots)
        do {
            let result = try await body(client)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }

    // MARK: Deckhouse objects

    /// Deployment `d8-system/deckhouse`.
    public func deckhouseDeployment() async throws -> KubeDeployment {
        let what = "deployment d8-system/deckhouse"
        let bytes = try await get("/apis/apps/v1/namespaces/d8-system/deployments/deckhouse", what: what,
                                  notFoundHint: "is this a Deckhouse cluster? (check the kubeconfig's context)")
        return try decode(KubeDeployment.self, from: bytes, what: what)
    }

    /// Secret `d8-system/deckhouse-registry`, values base64-decoded.
    public func deckhouseRegistrySecret() async throws -> KubeSecret {
        try await secret(namespace: "d8-system", name: "deckhouse-registry",
                         notFoundHint: "the cluster does not say which registry it uses")
    }

    /// ModuleConfig `deckhouse` (cluster-scoped).
    public func deckhouseModuleConfig() async throws -> KubeModuleConfig {
        let what = "moduleconfig deckhouse"
        let bytes = try await get("/apis/deckhouse.io/v1alpha1/moduleconfigs/deckhouse", what: what,
                                  notFoundHint: "the cluster has no ModuleConfig deckhouse")
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw ClusterError.unexpectedResponse(what: what, detail: "the body is not a JSON object")
        }
        let spec = object["spec"] as? [String: Any]
        let settings = spec?["settings"] as? [String: Any]
        let license = settings?["license"] as? [String: Any]
        return KubeModuleConfig(licenseEdition: license?["edition"] as? String,
                                releaseChannel: settings?["releaseChannel"] as? String)
    }

    // MARK: Requests

    /// `GET server + path` with `Accept: application/json`; the body of a 200 answer.
    /// 401, 403 and 404 become `ClusterError`s naming `what` (404 with `notFoundHint`). A 401
    /// to a token from an exec plugin is tried once more with the token the plugin gives next.
    public func get(_ path: String, what: String, notFoundHint: String = "") async throws -> [UInt8] {
        let url = kubeconfig.server + path
        let sent = try await credentialSource.credentials()
        var (status, bytes) = try await send(url, what: what, credentials: sent)
        if status == 401, let renewed = try await credentialSource.renewed(afterRefusing: sent.token) {
            (status, bytes) = try await send(url, what: what, credentials: renewed)
        }
        switch status {
        case 200:
            return bytes
        case 401:
            throw ClusterError.unauthorized(server: kubeconfig.server, user: kubeconfig.userName, path: kubeconfig.path,
                                            detail: Self.statusMessage(bytes) == "Unauthorized" ? "" : Self.statusMessage(bytes))
        case 403:
            throw ClusterError.forbidden(server: kubeconfig.server, user: kubeconfig.userName, what: what,
                                         detail: Self.statusMessage(bytes))
        case 404:
            throw ClusterError.notFound(what: what, hint: notFoundHint)
        default:
            let message = Self.statusMessage(bytes)
            throw ClusterError.unexpectedResponse(what: what, detail: "GET \(url): status \(status)\(message.isEmpty ? "" : ": \(message)")")
        }
    }

    /// One `GET` with `credentials`: the status and the body.
    private func send(_ url: String, what: String, credentials: KubeCredentials) async throws -> (status: Int, body: [UInt8]) {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "dkp-mirror/0.1")
        if let token = credentials.token {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        } else if let basic = credentials.basic {
            let encoded = Data("\(basic.username):\(basic.password)".utf8).base64EncodedString()
            request.headers.add(name: "Authorization", value: "Basic \(encoded)")
        }
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await clients.client(for: url).execute(request, timeout: requestTimeout)
            body = try await response.body.collect(upTo: Self.maxBodySize)
        } catch is NIOTooManyBytesError {
            throw ClusterError.unexpectedResponse(what: what, detail: "the answer is larger than \(Self.maxBodySize) bytes")
        } catch {
            throw classify(error)
        }
        return (Int(response.status.code), Array(body.readableBytesView))
    }

    /// The `message` of a Kubernetes `Status` body, or a short printable prefix of the body.
    static func statusMessage(_ bytes: [UInt8]) -> String {
        if let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
           let message = object["message"] as? String {
            return String(message.prefix(300))
        }
        let text = String(decoding: bytes.prefix(200), as: UTF8.self)
            .filter { !$0.isNewline }
            .trimmingCharacters(in: .whitespaces)
        return text
    }

    func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw ClusterError.unexpectedResponse(what: what, detail: "the body is not the object expected (\(String(describing: error).prefix(200)))")
        }
    }

    /// Maps a transport failure onto `ClusterError.cannotConnect` with a hint.
    func classify(_ error: Error) -> ClusterError {
        let server = kubeconfig.server
        let config = "server of cluster '\(kubeconfig.clusterName)' in \(kubeconfig.path)"
        let reach = "check the \(config) and that the API server is reachable from here"
        if let proxy = clients.proxy(for: server), let error = error as? HTTPClientError {
            let source = kubeconfig.proxy != nil ? "proxy-url of cluster '\(kubeconfig.clusterName)'" : "--proxy or HTTPS_PROXY"
            switch error {
            case .proxyAuthenticationRequired:
                return .cannotConnect(server: server, detail: "the proxy \(proxy) answered 407: it wants credentials, or refused the ones given",
                                      hint: "give them in the proxy URL (http://USER:PASSWORD@HOST:PORT in the \(source))")
            case .invalidProxyResponse:
                return .cannotConnect(server: server, detail: "the proxy \(proxy) refused to open a tunnel (CONNECT) to the API server",
                                      hint: "check the credentials in the \(source), that it lets CONNECT through to the API server, or name its host in NO_PROXY")
            case .connectTimeout:
                return .cannotConnect(server: server, detail: "connecting to the proxy \(proxy) timed out", hint: "check the \(source)")
            default:
                break
            }
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout:
                return .cannotConnect(server: server, detail: "connection timed out", hint: reach)
            case .readTimeout, .deadlineExceeded:
                return .cannotConnect(server: server, detail: "no answer in time", hint: reach)
            case .remoteConnectionClosed:
                return .cannotConnect(server: server, detail: "the connection was closed mid-request", hint: "check the network, the \(config) and the client certificate")
            default:
                break
            }
        }
        let text = String(describing: error)
        let lower = text.lowercased()
        // NIOPosix's NIOConnectionError (not imported here): no connection attempt at all means DNS failed.
        if String(describing: type(of: error)) == "NIOConnectionError", text.contains("connectionErrors: []") {
            return .cannotConnect(server: server, detail: "the host name does not resolve", hint: reach)
        }
        let ca = kubeconfig.certificateAuthoritySource ?? "certificate-authority-data of cluster '\(kubeconfig.clusterName)' (none is set)"
        if lower.contains("certificate_verify_failed") || lower.contains("certificate verify failed")
            || lower.contains("unable to get local issuer") || lower.contains("self signed") || lower.contains("self-signed") {
            return .cannotConnect(server: server, detail: "its TLS certificate is not trusted",
                                  hint: "check \(ca) in \(kubeconfig.path) (or set insecure-skip-tls-verify: true in the cluster entry)")
        }
        if lower.contains("certificate_required") || lower.contains("certificate required") || lower.contains("handshake_failure")
            || lower.contains("alert") || lower.contains("bad_certificate") || lower.contains("unknown_ca") {
            return .cannotConnect(server: server, detail: "the TLS handshake failed (the server rejected the connection: \(Self.sslReason(text)))",
                                  hint: "check the client certificate of user '\(kubeconfig.userName)' in \(kubeconfig.path) (\(kubeconfig.credentials.kinds))")
        }
        if lower.contains("wrong_version_number") || lower.contains("http_request") {
            return .cannotConnect(server: server, detail: "the server does not speak TLS", hint: "check the \(config)")
        }
        if error is NIOSSLError || lower.contains("ssl") || lower.contains("tls") {
            return .cannotConnect(server: server, detail: "TLS failed (\(Self.sslReason(text)))", hint: "check \(ca) and the client certificate in \(kubeconfig.path)")
        }
        if lower.contains("refused") {
            return .cannotConnect(server: server, detail: "connection refused", hint: reach)
        }
        return .cannotConnect(server: server, detail: String(text.prefix(200)), hint: reach)
    }

    /// A short BoringSSL reason (`TLSV1_ALERT_CERTIFICATE_REQUIRED`) out of an error's text.
    static func sslReason(_ text: String) -> String {
        // BoringSSL errors read like "error:10000412:SSL routines:OPENSSL_internal:SSLV3_ALERT_BAD_CERTIFICATE".
        if let range = text.range(of: "OPENSSL_internal:") {
            let rest = text[range.upperBound...]
            let reason = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            if !reason.isEmpty { return String(reason) }
        }
        return String(text.prefix(200))
    }
}

// MARK: Objects

/// The parts of an apps/v1 Deployment that detection reads.
public struct KubeDeployment: Decodable, Sendable {
    public struct Container: Decodable, Sendable {
        public var name: String
        public var image: String?
    }
    struct Metadata: Decodable { var name: String?; var namespace: String? }
    struct PodSpec: Decodable { var containers: [Container]?; var initContainers: [Container]? }
    struct Template: Decodable { var spec: PodSpec? }
    struct Spec: Decodable { var template: Template? }

    var metadata: Metadata?
    var spec: Spec?

    public var name: String { metadata?.name ?? "" }
    /// The pod template's containers (not the init containers).
    public var containers: [Container] { spec?.template?.spec?.containers ?? [] }
    /// The pod template's init containers.
    public var initContainers: [Container] { spec?.template?.spec?.initContainers ?? [] }
}

/// A Secret's values, base64-decoded. `description` lists the keys only.
public struct KubeSecret: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public var name: String
    public var data: [String: [UInt8]]

    public init(name: String, data: [String: [UInt8]]) {
        self.name = name
        self.data = data
    }

    /// The value of `key` as trimmed UTF-8 text, nil when absent or empty.
    public func string(_ key: String) -> String? {
        guard let bytes = data[key] else { return nil }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }

    public var description: String { "Secret(\(name), keys: \(data.keys.sorted().joined(separator: ", ")))" }
    public var debugDescription: String { description }

    struct Raw: Decodable {
        struct Metadata: Decodable { var name: String? }
        var metadata: Metadata?
        var data: [String: String]?
        var stringData: [String: String]?
    }
}

/// The settings of ModuleConfig `deckhouse` that detection reads.
public struct KubeModuleConfig: Sendable {
    /// `.spec.settings.license.edition`.
    public var licenseEdition: String?
    /// `.spec.settings.releaseChannel`.
    public var releaseChannel: String?

    public init(licenseEdition: String? = nil, releaseChannel: String? = nil) {
        self.licenseEdition = licenseEdition
        self.releaseChannel = releaseChannel
    }
}
