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
    /// A renewal in progress, which concurrent requests wait for instead of running the plugin
    /// again, numbered so that a slower waiter never puts back the credentials of an older one.
    private var renewal: (number: Int, task: Task<KubeCredentials, Error>)?
    private var renewalsStarted = 0, renewalTaken = 0

    init(_ credentials: KubeCredentials) {
        current = credentials
        exec = credentials.exec
        oidc = credentials.oidc
    }

    /// Only a token can be renewed: a client certificate is fixed in the TLS configuration.
    private var renewable: Bool { (exec != nil || oidc != nil) && current.token != nil }

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
        let (number, task): (Int, Task<KubeCredentials, Error>)
        if let renewal {
            (number, task) = renewal
        } else {
            renewalsStarted += 1
            let (exec, oidc, previous) = (self.exec, self.oidc, current)
            (number, task) = (renewalsStarted, Task {
                var fresh = previous
                if let exec {
                    fresh = try await exec.credentials()
                } else if let oidc {
                    fresh = try oidc.credentials()
                }
                fresh.exec = exec
                fresh.oidc = oidc
                // The TLS configuration keeps the certificate the client was made with.
                fresh.clientCertificatePEM = previous.clientCertificatePEM
                fresh.clientKeyPEM = previous.clientKeyPEM
                return fresh
            })
            renewal = (number, task)
        }
        // Ctrl-C cancels the run, and with it the plugin (SIGTERM).
        let outcome = await withTaskCancellationHandler { await task.result } onCancel: { task.cancel() }
        // Done, well or not: the next renewal runs the plugin again.
        if renewal?.number == number { renewal = nil }
        let fresh = try outcome.get()
        if number > renewalTaken {
            renewalTaken = number
            current = fresh
        }
    }
}
