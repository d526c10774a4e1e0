import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import Network

/// A kubeconfig user's legacy `oidc` auth-provider (what dex-k8s-authenticator, the kubeconfig
/// generator of Deckhouse's user-authn, writes), taken as client-go's oidc provider takes it:
/// the id-token is the bearer while it is valid; once it has expired, a new one comes from the
/// issuer (its discovery document's token endpoint) for the refresh-token. The kubeconfig is
/// not written back (kubectl would store the new tokens; dkp-mirror only reads). No token,
/// refresh-token or client secret ever shows.
public struct OIDCAuthProvider: Sendable {
    var idToken: String?
    var refreshToken: String?
    var issuerURL: String?
    var clientID: String?
    var clientSecret: String?
    /// `idp-certificate-authority(-data)`: the CA to trust for the issuer instead of the system's.
    var certificateAuthorityPEM: [UInt8]?
    var kubeconfigPath: String
    var userName: String

    /// A JWT's `exp`; nil when the token is not a JWT with one.
    static func expiry(ofJWT token: String) -> Date? {
        let parts = token.split(separator: ".")
        guard parts.count == 3 else { return nil }
        var base64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64),
              let claims = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let exp = claims["exp"] as? Double else { return nil }
        return Date(timeIntervalSince1970: exp)
    }

    private func fail(_ message: String) -> ClusterError {
        .unsupportedAuthentication(path: kubeconfigPath, message: "user '\(userName)' (oidc auth-provider): \(message)")
    }

    /// The bearer token to use: the id-token while it is valid (or when its expiry cannot be
    /// read: the API server judges it), else a refreshed one.
    public func credentials(proxies: ProxySettings, trustRoots: NIOSSLTrustRoots) async throws -> KubeCredentials {
        if let idToken, !idToken.isEmpty, Self.expiry(ofJWT: idToken).map({ $0 > Date().addingTimeInterval(10) }) ?? true {
            return KubeCredentials(token: idToken)
        }
        guard let refreshToken, !refreshToken.isEmpty, let issuerURL, !issuerURL.isEmpty, let clientID, !clientID.isEmpty else {
            throw fail("the id-token has expired (or there is none), and without refresh-token, idp-issuer-url and client-id no new one can be had; "
                       + "run any kubectl command with this kubeconfig (it refreshes the token) or get a fresh kubeconfig")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = trustRoots
        if let pem = certificateAuthorityPEM {
            guard let certificates = try? NIOSSLCertificate.fromPEMBytes(pem), !certificates.isEmpty else {
                throw fail("idp-certificate-authority holds no PEM certificate")
            }
            tls.trustRoots = .certificates(certificates)
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .follow(max: 5, allowCycles: false),
                                                     timeout: .init(connect: .seconds(10), read: .seconds(30)))
        configuration.httpVersion = .http1Only
        let clients = HTTPClients(configuration: configuration, proxies: proxies)
        do {
            let token = try await refreshedIDToken(issuerURL: issuerURL, clientID: clientID, refreshToken: refreshToken, clients: clients)
            await clients.shutdown()
            return KubeCredentials(token: token)
        } catch {
            await clients.shutdown()
            throw error
        }
    }

    private func refreshedIDToken(issuerURL: String, clientID: String, refreshToken: String, clients: HTTPClients) async throws -> String {
        let issuer = issuerURL.hasSuffix("/") ? String(issuerURL.dropLast()) : issuerURL
        struct Discovery: Decodable { var token_endpoint: String? }
        let discovery = try await exchange(HTTPClientRequest(url: issuer + "/.well-known/openid-configuration"), clients: clients,
                                           what: "the issuer's discovery document \(issuer)/.well-known/openid-configuration")
        guard let endpoint = (try? JSONDecoder().decode(Discovery.self, from: discovery.body))?.token_endpoint, !endpoint.isEmpty else {
            throw fail("the issuer \(issuer) names no token_endpoint in its discovery document")
        }
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        // client_secret_basic, as golang.org/x/oauth2 tries first: id and secret form-encoded, then base64.
        let basic = Data("\(Self.formEncoded(clientID)):\(Self.formEncoded(clientSecret ?? ""))".utf8).base64EncodedString()
        request.headers.add(name: "Authorization", value: "Basic \(basic)")
        request.body = .bytes(ByteBuffer(string: "grant_type=refresh_token&refresh_token=\(Self.formEncoded(refreshToken))"))
        struct Reply: Decodable { var id_token: String?; var error: String? }
        let answer = try await exchange(request, clients: clients, what: "the token endpoint \(endpoint.split(separator: "?").first ?? "")", acceptErrors: true)
        let reply = try? JSONDecoder().decode(Reply.self, from: answer.body)
        guard answer.status == 200 else {
            throw fail("the issuer refused the refresh-token (\(answer.status)\(reply?.error.map { " \($0)" } ?? "")): "
                       + "run any kubectl command with this kubeconfig to log in again, or get a fresh kubeconfig")
        }
        guard let token = reply?.id_token, !token.isEmpty else { throw fail("the issuer's token endpoint gave no id_token") }
        return token
    }

    /// One request with a small answer; a failure to reach the issuer names it.
    private func exchange(_ request: HTTPClientRequest, clients: HTTPClients, what: String,
                          acceptErrors: Bool = false) async throws -> (status: UInt, body: Data) {
        do {
            let response = try await clients.client(for: request.url).execute(request, timeout: .seconds(30))
            let body = try await response.body.collect(upTo: 1 << 20)
            guard acceptErrors || response.status == .ok else { throw fail("\(what) answered \(response.status.code)") }
            return (response.status.code, Data(body.readableBytesView))
        } catch let error as ClusterError {
            throw error
        } catch {
            throw fail("cannot reach \(what): \(Kubeconfig.shortReason(error))")
        }
    }

    static func formEncoded(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }
}
