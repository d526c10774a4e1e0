import Logging
import Network
import NIOSSL

/// How to reach one registry: transport security, credentials, timeouts, retries.
public struct RegistryConfiguration: Sendable {
    /// Talk plain HTTP (`--insecure`).
    public var insecure = false
    /// HTTPS without certificate verification (`--tls-skip-verify`).
    public var tlsSkipVerify = false
    /// A PEM bundle trusted in addition to the system's (`--ca-file`).
    public var caFile: String?
    public var credential: Credential?
    /// Which requests go through which proxy (`--proxy`, `HTTPS_PROXY`, `NO_PROXY`, ...).
    public var proxies: ProxySettings = .direct
    /// The CA certificates trusted before `caFile` is added: the TLS library's defaults, or
    /// what `SSL_CERT_FILE`/`SSL_CERT_DIR` name (`SystemTrust.roots()`).
    public var trustRoots: NIOSSLTrustRoots = .default
    /// How the CLI spells the options, so errors can say which one to pass.
    public var optionNames = OptionNames()

    /// Time allowed to open a TCP (and TLS) connection.
    public var connectTimeout: Duration = .seconds(15)
    /// Longest silence (no byte received or sent) before a transfer is abandoned and retried.
    /// There is deliberately no whole-transfer deadline: a multi-gigabyte layer takes as long as it takes.
    public var idleTimeout: Duration = .seconds(60)
    /// Attempts per request, counting the first, for connection errors, 408, 429 and 5xx.
    public var maxAttempts = 6
    public var initialBackoff: Duration = .milliseconds(250)
    public var maxBackoff: Duration = .seconds(20)

    /// Blobs up to this size go up in one PUT; larger ones in a streamed PATCH then a PUT.
    public var monolithicUploadLimit: Int64 = 4 << 20
    /// When set, large uploads are cut into PATCHes of this many bytes (at least the
    /// registry's OCI-Chunk-Min-Length). Nil streams the whole blob in one PATCH.
    public var uploadChunkSize: Int?
    /// Upper bound on concurrent connections to this registry.
    public var maxConnections = 16

    public var logger = Logger(label: "dkp-mirror.registry")

    public init() {}

    public var scheme: String { insecure ? "http" : "https" }
}

/// Option spellings used in error hints (the CLI has prefixed variants for `copy`).
public struct OptionNames: Sendable {
    public var login = "--registry-login"
    public var password = "--registry-password"
    public var caFile = "--ca-file"
    public var tlsSkipVerify = "--tls-skip-verify"
    public var insecure = "--insecure"

    public init() {}

    public init(prefix: String) {
        login = "--\(prefix)login"
        password = "--\(prefix)password"
        caFile = "--\(prefix)ca-file"
        tlsSkipVerify = "--\(prefix)tls-skip-verify"
        insecure = "--\(prefix)insecure"
    }
}
