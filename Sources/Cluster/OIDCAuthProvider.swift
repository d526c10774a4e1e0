import Foundation

/// A kubeconfig user's legacy `oidc` auth-provider (what dex-k8s-authenticator, the kubeconfig
/// generator of Deckhouse's user-authn, writes): its id-token is the bearer while it is valid,
/// as client-go's oidc provider takes it (10 s of leeway). An expired one is not refreshed
/// here: Dex rotates refresh tokens, so a refresh that is not written back into the kubeconfig
/// (kubectl writes it; dkp-mirror only reads kubeconfigs) would leave it with a spent one.
/// kubectl refreshes and stores it; the error says so. No token or secret ever shows.
public struct OIDCAuthProvider: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    var idToken: String?
    var canRefresh: Bool
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

    /// The bearer token: the id-token while it is valid (or when its expiry cannot be read:
    /// the API server judges it).
    public func credentials(now: Date = Date()) throws -> KubeCredentials {
        guard let idToken, !idToken.isEmpty else {
            throw ClusterError.unsupportedAuthentication(path: kubeconfigPath, message: "user '\(userName)' (oidc auth-provider) has no id-token; "
                + "log in through the cluster's kubeconfig generator and use the kubeconfig it gives")
        }
        if let expiry = Self.expiry(ofJWT: idToken), expiry <= now.addingTimeInterval(10) {
            let when = ISO8601DateFormatter().string(from: expiry)
            throw ClusterError.credentialsUnavailable(path: kubeconfigPath, message: "the id-token of user '\(userName)' (oidc auth-provider) expired at \(when); "
                + (canRefresh ? "run any kubectl command with this kubeconfig (kubectl refreshes the token and stores it), then run this again"
                              : "get a fresh kubeconfig from the cluster's kubeconfig generator"))
        }
        var credentials = KubeCredentials(token: idToken)
        credentials.expires = Self.expiry(ofJWT: idToken)
        return credentials
    }

    public var description: String { "oidc auth-provider of user '\(userName)'" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["user": userName]) }
}
