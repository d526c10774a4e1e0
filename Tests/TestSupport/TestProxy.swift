import Foundation

/// A real HTTP proxy (Debian's `tinyproxy`) on 127.0.0.1, started by `scripts/proxy.sh` in a
/// fresh temporary directory, optionally with BasicAuth. Dropping the last reference stops it.
public final class TestProxy: Sendable {
    public let directory: URL
    public let port: Int
    /// `NAME:PASSWORD` it demands, if any.
    public let user: String?

    private init(directory: URL, port: Int, user: String?) {
        self.directory = directory
        self.port = port
        self.user = user
    }

    /// `user`: `NAME:PASSWORD` for BasicAuth.
    public static func start(user: String? = nil) async throws -> TestProxy {
        let (directory, info) = try await ScriptService.start(
            RepoPaths.proxyScript, prefix: "dkp-proxy", user.map { ["--user", $0] } ?? [])
        return TestProxy(directory: directory, port: Int(info["PORT"]!)!, user: user)  // start checked PORT
    }

    deinit { ScriptService.stop(RepoPaths.proxyScript, directory) }

    /// `http://[NAME:PASSWORD@]127.0.0.1:PORT`, as a proxy variable takes it.
    public var url: String { "http://\(user.map { "\($0)@" } ?? "")127.0.0.1:\(port)" }
    /// The same without credentials.
    public var bareURL: String { "http://127.0.0.1:\(port)" }

    /// The request lines the proxy logged (`CONNECT 127.0.0.1:5000`, `GET http://...`), in order.
    public var requests: [String] {
        let log = (try? String(contentsOf: directory.appendingPathComponent("tinyproxy.log"), encoding: .utf8)) ?? ""
        return log.split(separator: "\n").compactMap { line in
            guard let range = line.range(of: "): ", options: .backwards), line.contains("Request (file descriptor") else { return nil }
            return String(line[range.upperBound...]).replacingOccurrences(of: " HTTP/1.1", with: "")
                .replacingOccurrences(of: " HTTP/1.0", with: "")
        }
    }

    /// The whole log, for failure messages.
    public var log: String {
        (try? String(contentsOf: directory.appendingPathComponent("tinyproxy.log"), encoding: .utf8)) ?? ""
    }
}
