import Foundation

/// An Ingress stand-in (Debian's nginx, TLS with a CA of its own) on 127.0.0.1 in front of a
/// test registry, started by `scripts/ingress.sh` as ingress-nginx configures a registry
/// Ingress. Dropping the last reference stops it.
public final class TestIngress: Sendable {
    public let directory: URL
    public let port: Int
    /// The CA that signed its certificate.
    public let caFile: String

    private init(directory: URL, port: Int, caFile: String) {
        self.directory = directory
        self.port = port
        self.caFile = caFile
    }

    /// `requestBuffering`: nginx reads each whole request body into a file before it sends it
    /// upstream (its default and ingress-nginx's); off, it streams the body as it arrives.
    /// `forbidManifestHead`: every HEAD of a manifest is answered 403, as some registries answer
    /// a push-only user; `manifestHeadStatus` answers them with that status instead (405: a
    /// registry that takes no HEAD). `forwardedProto` false leaves out `X-Forwarded-Proto`: a plain-HTTP
    /// registry behind it then names http:// upload URLs. `bodyLimit` (nginx's size syntax, `1m`)
    /// answers larger request bodies with 413.
    public static func start(upstream registry: TestRegistry, requestBuffering: Bool = true,
                             http2: Bool = true, forbidManifestHead: Bool = false, manifestHeadStatus: Int? = nil,
                             forwardedProto: Bool = true, bodyLimit: String? = nil) async throws -> TestIngress {
        let scheme = registry.isTLS ? "https" : "http"
        var arguments = ["--upstream", "\(scheme)://\(registry.host)", "--request-buffering", requestBuffering ? "on" : "off"]
        if !http2 { arguments.append("--no-http2") }
        if forbidManifestHead { arguments.append("--forbid-manifest-head") }
        if let manifestHeadStatus { arguments += ["--manifest-head-status", "\(manifestHeadStatus)"] }
        if !forwardedProto { arguments.append("--no-forwarded-proto") }
        if let bodyLimit { arguments += ["--client-max-body-size", bodyLimit] }
        let (directory, info) = try await ScriptService.start(RepoPaths.ingressScript, prefix: "dkp-ingress", arguments)
        return TestIngress(directory: directory, port: Int(info["PORT"]!)!, caFile: info["CA"] ?? "")  // start checked PORT
    }

    deinit { ScriptService.stop(RepoPaths.ingressScript, directory) }

    public var host: String { "127.0.0.1:\(port)" }

    /// One line a request nginx answered: `METHOD URI STATUS BYTES-RECEIVED`.
    public var requests: [String] {
        ((try? String(contentsOf: directory.appendingPathComponent("access.log"), encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }

    /// nginx's error log, for failure messages.
    public var errors: String {
        (try? String(contentsOf: directory.appendingPathComponent("error.log"), encoding: .utf8)) ?? ""
    }
}
