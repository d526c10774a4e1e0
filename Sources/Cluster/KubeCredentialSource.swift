import Foundation

/// The credentials a `KubeClient` sends, kept fresh as client-go keeps them for a long run
/// (`status --wait` polls for up to 30 minutes; Dex, user-authn's OIDC provider, gives
/// short-lived id-tokens): an exec plugin is run again once its `expirationTimestamp` has passed, and
/// when the API server refuses (401) the token it gave. An oidc id-token is checked again
/// the same way, so an expired one ends with what to do instead of a bare 401. Static
/// credentials (a token, a client certificate, basic auth) are what they are.
///
/// Only the token is renewed: a client certificate an exec plugin gives is fixed in the TLS
/// configuration when the client is made.
actor KubeCredentialSource {
    private var current: KubeCredentials
    private let exec: ExecCredentialPlugin?
    private let oidc: OIDCAuthProvider?
    /// A renewal in progress, which concurrent requests wait for instead of running the plugin again.
    private var renewal: Task<KubeCredentials, Error>?

    init(_ credentials: KubeCredentials) {
        current = credentials
        exec = credentials.exec
        oidc = credentials.oidc
    }

    private var renewable: Bool { exec != nil || oidc != nil }

    /// The credentials to send now: renewed first when they have expired.
    func credentials(now: Date = Date()) async throws -> KubeCredentials {
        if renewable, let expires = current.expires, expires <= now { try await renew() }
        return current
    }

    /// After the API server refused `sentToken`: credentials worth one more try, or nil when
    /// there are none (static credentials, or the plugin gave the same token again).
    func renewed(afterRefusing sentToken: String?) async throws -> KubeCredentials? {
        guard renewable, sentToken != nil else { return nil }
        // Another request has renewed them since this one was sent.
        if current.token != sentToken { return current }
        try await renew()
        return current.token == sentToken ? nil : current
    }

    private func renew() async throws {
        if let renewal {
            current = try await renewal.value
            return
        }
        let (exec, oidc, previous) = (self.exec, self.oidc, current)
        let task = Task<KubeCredentials, Error> {
            var fresh: KubeCredentials
            if let exec {
                fresh = try await exec.credentials()
            } else if let oidc {
                fresh = try oidc.credentials()
            } else {
                return previous
            }
            fresh.exec = exec
            fresh.oidc = oidc
            // The TLS configuration keeps the certificate the client was made with.
            fresh.clientCertificatePEM = previous.clientCertificatePEM
            fresh.clientKeyPEM = previous.clientKeyPEM
            return fresh
        }
        renewal = task
        defer { renewal = nil }
        current = try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
    }
}
