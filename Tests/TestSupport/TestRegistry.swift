import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1, started by
/// `scripts/registry.sh` in a fresh temporary directory. Dropping the last reference stops
/// the process and removes the directory, so a failing test leaks nothing.
public final class TestRegistry: Sendable {
    /// The registry's own folder: config.yml, storage/, registry.log, pid, certificates.
    public let directory: URL
    /// `127.0.0.1:PORT`.
    public let host: String
    public let port: Int
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    public let url: URL
    /// Path of the CA certificate (PEM) that signed the server certificate, with TLS.
    public let caFile: String?
    public let isTLS: Bool
    /// The htpasswd users (name: password) the registry accepts.
    public let users: [String: String]
    /// The token issuer the registry trusts, if it uses token auth.
    public let tokenIssuer: TokenIssuer?

    private init(
        directory: URL, port: Int, isTLS: Bool, caFile: String?, users: [String: String],
        tokenIssuer: TokenIssuer?
    ) {
        self.directory = directory
        self.port = port
        self.host = "127.0.0.1:\(port)"
        self.isTLS = isTLS
        self.url = URL(string: "\(isTLS ? "https" : "http")://127.0.0.1:\(port)")
            ?? URL(fileURLWithPath: "/")
        self.caFile = caFile
        self.users = users
        self.tokenIssuer = tokenIssuer
    }

    /// Starts a registry. `tls`: HTTPS with a fresh CA (`caFile`). `users`: htpasswd
    /// (basic) auth. `token`: bearer-token auth trusting `token` (exclusive with `users`);
    /// `realm`, when given, is the token URL the registry names instead of `token.realm` (a
    /// proxy in front of the issuer).
    public static func start(
        tls: Bool = false, users: [String: String] = [:], token: TokenIssuer? = nil, realm: String? = nil
    ) async throws -> TestRegistry {
        if !users.isEmpty && token != nil {
            throw TestSupportError("TestRegistry: users (htpasswd) and token auth exclude each other")
        }
        let dir = try temporaryDirectory("dkp-registry")
        var args = ["start", dir.path]
        if tls { args.append("--tls") }
        for (name, password) in users.sorted(by: { $0.key < $1.key }) {
            args += ["--user", "\(name):\(password)"]
        }
        if let token {
            args += ["--token", realm ?? token.realm, token.service, token.issuer, token.certFile]
        }
        let output: TestProcess.Output
        do {
            output = try await TestProcess.run(
                "/bin/bash", [RepoPaths.registryScript.path] + args, environment: scriptEnvironment)
        } catch {
            try? FileManager.default.removeItem(at: dir)
            throw error
        }
        guard output.succeeded else {
            try? FileManager.default.removeItem(at: dir)
            throw TestSupportError(
                "registry.sh start failed (\(output.status)): \(output.stderrString)")
        }
        let info = parseInfo(output.stdoutString)
        guard let portText = info["PORT"], let port = Int(portText) else {
            // Stop whatever may have started before giving up.
            _ = try? await TestProcess.run("/bin/bash", [RepoPaths.registryScript.path, "stop", dir.path])
            try? FileManager.default.removeItem(at: dir)
            throw TestSupportError("registry.sh start printed no PORT: \(output.stdoutString)")
        }
        return TestRegistry(
            directory: dir, port: port, isTLS: tls, caFile: info["CA"], users: users,
            tokenIssuer: token)
    }

    deinit {
        // Waiting for the process to go takes a thread of its own (see Blocking).
        let directory = self.directory
        Blocking.teardown {
            Self.stopProcess(directory)
            Self.stopWatcher(directory)
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// The registry's process id, while it runs.
    public var pid: Int32? { Self.pid(directory) }

    private static func pid(_ directory: URL) -> Int32? {
        guard let text = try? String(contentsOf: directory.appendingPathComponent("pid"), encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        return pid
    }

    /// Whether the registry process is alive.
    public var isRunning: Bool {
        guard let pid else { return false }
        return Self.isAlive(pid)
    }

    /// `DIR/storage`, the filesystem driver's root.
    public var storageDirectory: URL { directory.appendingPathComponent("storage") }

    /// The registry's log (stdout and stderr of the process).
    public var log: String {
        (try? String(contentsOf: directory.appendingPathComponent("registry.log"), encoding: .utf8)) ?? ""
    }

    /// Stops the registry (TERM, then KILL after 5 s). Storage and config stay, so
    /// `restart()` can bring it back on the same port. Blocks until the process is gone.
    public func stop() {
        Self.stopProcess(directory)
    }

    /// Kills the registry at once with SIGKILL (a crash, as opposed to `stop()`), and
    /// waits until it is gone.
    public func kill() {
        guard let pid, Self.isOurs(pid, directory) else { return }
        _ = posixKill(pid, SIGKILL)
        _ = Self.waitGone(pid, seconds: 5)
    }

    /// Stops (if running) and starts the registry again on the same port, config and storage.
    public func restart() async throws {
        let output = try await TestProcess.run(
            "/bin/bash", [RepoPaths.registryScript.path, "restart", directory.path],
            environment: Self.scriptEnvironment)
        guard output.succeeded else {
            throw TestSupportError(
                "registry.sh restart failed (\(output.status)): \(output.stderrString)")
        }
        let info = Self.parseInfo(output.stdoutString)
        guard info["PORT"] == String(port) else {
            throw TestSupportError("registry.sh restart came back on another port: \(output.stdoutString)")
        }
    }

    /// A fresh, empty directory in this test process's scratch folder (`TestScratch`, removed
    /// when the process exits), named after `prefix`.
    public static func temporaryDirectory(_ prefix: String) throws -> URL {
        let dir = TestScratch.root.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(12).lowercased())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    // MARK: - Internals

    /// The script's environment: ours, plus our pid so that its watcher stops the
    /// registry should this process die without running `deinit`.
    private static var scriptEnvironment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["REGISTRY_OWNER_PID"] = String(getpid())
        return environment
    }

    /// Ends the watcher process group that `registry.sh start` left (see the script).
    private static func stopWatcher(_ directory: URL) {
        let file = directory.appendingPathComponent("watcher.pid")
        guard let text = try? String(contentsOf: file, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
            let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
            String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains(directory.path)
        else { return }
        _ = posixKill(-pid, SIGTERM)
    }

    private static func parseInfo(_ text: String) -> [String: String] {
        var info: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            info[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return info
    }

    /// Same logic as `registry.sh stop`, in-process so that `deinit` needs no subprocess.
    private static func stopProcess(_ directory: URL) {
        let pidFile = directory.appendingPathComponent("pid")
        guard let pid = pid(directory) else {
            try? FileManager.default.removeItem(at: pidFile)
            return
        }
        if isAlive(pid) && isOurs(pid, directory) {
            _ = posixKill(pid, SIGTERM)
            if !waitGone(pid, seconds: 5) {
                _ = posixKill(pid, SIGKILL)
                _ = waitGone(pid, seconds: 5)
            }
        }
        try? FileManager.default.removeItem(at: pidFile)
    }

    /// True if `pid` runs this registry's config (guards against a recycled pid).
    private static func isOurs(_ pid: Int32, _ directory: URL) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else {
            return false
        }
        let cmdline = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        return cmdline.contains(directory.appendingPathComponent("config.yml").path)
    }

    /// Alive and not a zombie (an unreaped dead child of init still answers kill(pid, 0)).
    static func isAlive(_ pid: Int32) -> Bool {
        guard posixKill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return true }
        let rest = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces)
        return !(rest.hasPrefix("Z") || rest.hasPrefix("X"))
    }

    static func waitGone(_ pid: Int32, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if !isAlive(pid) { return true }
            usleep(10_000)
        }
        return !isAlive(pid)
    }
}
