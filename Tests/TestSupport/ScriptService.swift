import Foundation

/// A throw-away server that one of `scripts/` starts (`SCRIPT start DIR ARGS...`, printing
/// `KEY=VALUE` lines) and stops (`SCRIPT stop DIR`), in a fresh temporary directory.
enum ScriptService {
    /// Starts it; returns its directory and the `KEY=VALUE` lines it printed. With
    /// REGISTRY_OWNER_PID the script leaves a watcher that stops it should this process die.
    static func start(_ script: URL, prefix: String, _ arguments: [String]) async throws -> (URL, [String: String]) {
        let directory = try TestRegistry.temporaryDirectory(prefix)
        var environment = ProcessInfo.processInfo.environment
        environment["REGISTRY_OWNER_PID"] = String(getpid())
        let output = try await TestProcess.run("/bin/bash", [script.path, "start", directory.path] + arguments,
                                               environment: environment)
        let info = Dictionary(output.stdoutString.split(separator: "\n").compactMap { line -> (String, String)? in
            guard let equals = line.firstIndex(of: "=") else { return nil }
            return (String(line[..<equals]), String(line[line.index(after: equals)...]))
        }, uniquingKeysWith: { $1 })
        guard output.succeeded, info["PORT"].flatMap(Int.init) != nil else {
            try? FileManager.default.removeItem(at: directory)
            throw TestSupportError("\(script.lastPathComponent) start failed (\(output.status)): \(output.stderrString)")
        }
        return (directory, info)
    }

    /// From a `deinit`: `SCRIPT stop DIR` waits for the server to go, on a thread of its own
    /// (see Blocking), then the directory goes.
    static func stop(_ script: URL, _ directory: URL) {
        Blocking.teardown {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = [script.path, "stop", directory.path]
            try? process.run()
            process.waitUntilExit()
            try? FileManager.default.removeItem(at: directory)
        }
    }
}
