import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A kubeconfig user's `exec` credential plugin (client.authentication.k8s.io v1 or
/// v1beta1), run as kubectl runs it: the command with its arguments and `env` added to this
/// process's environment, `KUBERNETES_EXEC_INFO` saying whether it may talk to the user, its
/// stderr passed through (kubelogin prints its browser prompt there) and an `ExecCredential`
/// read from its stdout: a bearer token, or a client certificate and key. `kubectl
/// oidc-login get-token` (Deckhouse's user-authn with kubelogin), `aws eks get-token` and
/// `gke-gcloud-auth-plugin` are plugins of this kind. Its arguments and output are never shown
/// (they may hold a client secret or the token).
public struct ExecCredentialPlugin: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var command: String
    var arguments: [String]
    var environment: [(name: String, value: String)]
    var apiVersion: String
    var installHint: String?
    /// `Never`, `IfAvailable` or `Always` (v1 requires it; v1beta1 defaults to IfAvailable).
    var interactiveMode: String
    /// `provideClusterInfo: true`: `KUBERNETES_EXEC_INFO` carries the cluster (`spec.cluster`),
    /// as `clusterJSON` gives it once the kubeconfig's cluster is known.
    var provideClusterInfo = false
    var clusterJSON: String?
    /// The kubeconfig file naming it (a command with a `/` is relative to its directory) and user.
    var kubeconfigPath: String
    var userName: String

    static let apiVersions = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]

    /// The executable: a command with a path separator, relative to the kubeconfig's directory
    /// (as kubectl resolves it); a bare name is looked up in this process's `PATH`, as kubectl does.
    var executable: (path: String, searchPath: Bool) {
        guard command.contains("/") else { return (command, true) }
        let directory = URL(fileURLWithPath: kubeconfigPath).deletingLastPathComponent()
        return (command.hasPrefix("/") ? command : directory.appendingPathComponent(command).standardizedFileURL.path, false)
    }

    /// Runs the plugin and returns the credentials it gave. It is spawned in this process's
    /// group (Foundation's `Process` gives a child a group of its own, where a plugin that
    /// reads the terminal is stopped by SIGTTIN and Ctrl-C never reaches it), and waited for on
    /// a thread of its own (an interactive login can take minutes); cancelling sends it SIGTERM.
    public func credentials() async throws -> KubeCredentials {
        let terminal = isatty(STDIN_FILENO) == 1
        if interactiveMode == "Always" && !terminal {
            throw ClusterError.credentialsUnavailable(path: kubeconfigPath, message: "the exec plugin of user '\(userName)' (command '\(command)') "
                + "wants a terminal (interactiveMode: Always) and standard input is not one; run this in a terminal")
        }
        let interactive = interactiveMode == "Always" || (interactiveMode == "IfAvailable" && terminal)
        let (pid, output) = try spawn(interactive: interactive)
        let (status, data) = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                Thread.detachNewThread { continuation.resume(returning: Self.collect(pid: pid, output: output)) }
            }
        } onCancel: {
            _ = kill(pid, SIGTERM)
        }
        let who = "the exec plugin of user '\(userName)' (command '\(command)')"
        guard status == 0 else {
            throw ClusterError.credentialsUnavailable(path: kubeconfigPath, message: "\(who) exited with status \(status); "
                + "its messages are above; run it by hand to log in, or use a kubeconfig whose user has a token or a client certificate")
        }
        return try Self.decode(data, apiVersion: apiVersion, who: who, path: kubeconfigPath)
    }

    /// Starts the plugin: stdout into a pipe whose read end is returned, stderr shared, stdin
    /// the terminal when interactive, else /dev/null.
    private func spawn(interactive: Bool) throws -> (pid_t, Int32) {
        let (executable, searchPath) = self.executable
        var environment = ProcessInfo.processInfo.environment
        for entry in self.environment { environment[entry.name] = entry.value }
        let cluster = provideClusterInfo ? clusterJSON.map { #","cluster":\#($0)"# } ?? "" : ""
        environment["KUBERNETES_EXEC_INFO"] = #"{"apiVersion":"\#(apiVersion)","kind":"ExecCredential","spec":{"interactive":\#(interactive)\#(cluster)}}"#
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            throw ClusterError.credentialsUnavailable(path: kubeconfigPath, message: "cannot run the exec plugin of user '\(userName)': no pipe (\(String(cString: strerror(errno))))")
        }
        // Neither end leaks into other children; the child's stdout, a dup2 of the write end, stays open.
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], STDOUT_FILENO)
        if !interactive { posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0) }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        func start() -> Int32 {
            searchPath ? posix_spawnp(&pid, executable, &actions, nil, argv, envp) : posix_spawn(&pid, executable, &actions, nil, argv, envp)
        }
        var result = start()
        // ETXTBSY: the file is still open for writing somewhere, e.g. in a child another thread
        // forked while it was being installed; that passes in moments.
        for _ in 0..<10 where result == ETXTBSY {
            usleep(20_000)
            result = start()
        }
        close(pipeEnds[1])
        guard result == 0 else {
            close(pipeEnds[0])
            let hint = installHint.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            if result == ENOENT {
                // This machine lacks it: bad input (exit 2).
                throw ClusterError.unsupportedAuthentication(path: kubeconfigPath, message: "the exec plugin of user '\(userName)' (command '\(command)') "
                    + "is not installed or not in PATH\(hint.map { " (\($0))" } ?? ""); install it, or use a kubeconfig whose user has a token or a client certificate")
            }
            throw ClusterError.unsupportedAuthentication(path: kubeconfigPath, message: "cannot run the exec plugin of user '\(userName)' "
                + "(\(executable)): \(String(cString: strerror(result)))\(hint.map { "; \($0)" } ?? "")")
        }
        return (pid, pipeEnds[0])
    }

    /// Reads the plugin's stdout to its end, then reaps it: its exit status (128 + the signal
    /// that ended it) and what it printed.
    private static func collect(pid: pid_t, output: Int32) -> (Int32, Data) {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = read(output, &buffer, buffer.count)
            if n > 0 { data.append(contentsOf: buffer[0..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        close(output)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        return (signal == 0 ? (status >> 8) & 0xff : 128 + signal, data)
    }

    /// The `ExecCredential` on the plugin's stdout, of the apiVersion the kubeconfig asked for
    /// (as client-go requires): a token, a client certificate and key (PEM), or both.
    static func decode(_ output: Data, apiVersion: String, who: String, path: String) throws -> KubeCredentials {
        struct Reply: Decodable {
            struct Status: Decodable {
                var token: String?; var clientCertificateData: String?; var clientKeyData: String?; var expirationTimestamp: String?
            }
            var apiVersion: String?
            var kind: String?
            var status: Status?
        }
        func fail(_ message: String) -> ClusterError { .credentialsUnavailable(path: path, message: "\(who) \(message)") }
        guard let reply = try? JSONDecoder().decode(Reply.self, from: output), reply.kind == "ExecCredential" else {
            throw fail("did not print an ExecCredential on its stdout")
        }
        guard reply.apiVersion == apiVersion else {
            throw fail("printed an ExecCredential of apiVersion '\(reply.apiVersion ?? "")', where the kubeconfig asks for \(apiVersion)")
        }
        let status = reply.status
        var credentials = KubeCredentials()
        if let token = status?.token, !token.isEmpty { credentials.token = token }
        let certificate = status?.clientCertificateData.flatMap { $0.isEmpty ? nil : $0 }, key = status?.clientKeyData.flatMap { $0.isEmpty ? nil : $0 }
        switch (certificate, key) {
        case let (certificate?, key?):
            credentials.clientCertificatePEM = Array(certificate.utf8)
            credentials.clientKeyPEM = Array(key.utf8)
        case (nil, nil):
            break
        default:
            throw fail("gave a client certificate without its key, or a key without its certificate")
        }
        guard credentials.hasAny else { throw fail("gave neither a token nor a client certificate and key") }
        if let stamp = status?.expirationTimestamp, !stamp.isEmpty {
            guard let expires = Self.date(rfc3339: stamp) else { throw fail("gave an expirationTimestamp that is not an RFC 3339 time: '\(stamp.prefix(40))'") }
            credentials.expires = expires
        }
        return credentials
    }

    /// The cluster as client-go puts it into `spec.cluster`: the server, its CA, whether TLS is verified.
    static func clusterJSON(of kubeconfig: Kubeconfig) -> String? {
        var cluster: [String: Any] = ["server": kubeconfig.server, "insecure-skip-tls-verify": kubeconfig.insecureSkipTLSVerify]
        if let ca = kubeconfig.certificateAuthorityPEM { cluster["certificate-authority-data"] = Data(ca).base64EncodedString() }
        guard let data = try? JSONSerialization.data(withJSONObject: cluster, options: [.sortedKeys, .withoutEscapingSlashes]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// `2026-12-08T02:00:00Z`, with or without fractional seconds, as Go's time.RFC3339 reads it.
    static func date(rfc3339 text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    public var description: String { "exec plugin '\(command)' of user '\(userName)'" }
    public var debugDescription: String { description }
    // Its arguments and env may hold a client secret: not even dump() shows them.
    public var customMirror: Mirror { Mirror(self, children: ["command": command, "user": userName]) }
}
