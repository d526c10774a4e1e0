import Foundation

/// A kubeconfig user's `exec` credential plugin (client.authentication.k8s.io v1 or
/// v1beta1), run as kubectl runs it: the command with its arguments and `env` added to this
/// process's environment, `KUBERNETES_EXEC_INFO` saying whether it may talk to the user, its
/// stderr passed through (kubelogin prints its browser prompt there) and an `ExecCredential`
/// read from its stdout: a bearer token, or a client certificate and key. `kubectl
/// oidc-login get-token` (Deckhouse's user-authn with kubelogin), `aws eks get-token` and
/// `gke-gcloud-auth-plugin` are plugins of this kind. Its arguments and output are never shown
/// (they may hold a client secret or the token).
public struct ExecCredentialPlugin: Sendable {
    public var command: String
    var arguments: [String]
    var environment: [(name: String, value: String)]
    var apiVersion: String
    var installHint: String?
    /// `Never`, `IfAvailable` or `Always` (v1 requires it; v1beta1 defaults to IfAvailable).
    var interactiveMode: String
    /// The kubeconfig file naming it (a command with a `/` is relative to its directory) and user.
    var kubeconfigPath: String
    var userName: String

    static let apiVersions = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]

    /// The executable: a command with a path separator, relative to the kubeconfig's directory
    /// (as kubectl resolves it); a bare name is looked up in `PATH` by `/usr/bin/env`.
    var invocation: (executable: String, arguments: [String]) {
        guard command.contains("/") else { return ("/usr/bin/env", [command] + arguments) }
        let directory = URL(fileURLWithPath: kubeconfigPath).deletingLastPathComponent()
        let path = command.hasPrefix("/") ? command : directory.appendingPathComponent(command).standardizedFileURL.path
        return (path, arguments)
    }

    /// Runs the plugin (on a thread of its own: an interactive login can take minutes) and
    /// returns the credentials it gave.
    public func credentials() async throws -> KubeCredentials {
        let interactive = interactiveMode == "Always" || (interactiveMode == "IfAvailable" && isatty(STDIN_FILENO) == 1)
        let (status, output) = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try run(interactive: interactive) })
            }
        }
        let who = "the exec plugin of user '\(userName)' (command '\(command)')"
        guard status == 0 else {
            let missing = status == 127 ? "; it is not installed or not in PATH" + (installHint.map { " (\($0.trimmingCharacters(in: .whitespacesAndNewlines)))" } ?? "") : ""
            throw ClusterError.unsupportedAuthentication(path: kubeconfigPath, message: "\(who) exited with status \(status)\(missing); "
                + "its messages are above; run it by hand to log in, or use a kubeconfig whose user has a token or a client certificate")
        }
        return try Self.decode(output, who: who, path: kubeconfigPath)
    }

    private func run(interactive: Bool) throws -> (Int32, Data) {
        let process = Process()
        let (executable, arguments) = invocation
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        for entry in self.environment { environment[entry.name] = entry.value }
        environment["KUBERNETES_EXEC_INFO"] = #"{"apiVersion":"\#(apiVersion)","kind":"ExecCredential","spec":{"interactive":\#(interactive)}}"#
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        process.standardInput = interactive ? FileHandle.standardInput : FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw ClusterError.unsupportedAuthentication(path: kubeconfigPath, message: "cannot run the exec plugin of user '\(userName)' "
                + "(\(executable)): \(Kubeconfig.shortReason(error))\(installHint.map { "; \($0.trimmingCharacters(in: .whitespacesAndNewlines))" } ?? "")")
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, data)
    }

    static func decode(_ output: Data, who: String, path: String) throws -> KubeCredentials {
        struct Reply: Decodable {
            struct Status: Decodable { var token: String?; var clientCertificateData: String?; var clientKeyData: String? }
            var kind: String?
            var status: Status?
        }
        guard let reply = try? JSONDecoder().decode(Reply.self, from: output), reply.kind == "ExecCredential", let status = reply.status else {
            throw ClusterError.unsupportedAuthentication(path: path, message: "\(who) did not print an ExecCredential on its stdout")
        }
        if let token = status.token, !token.isEmpty { return KubeCredentials(token: token) }
        if let certificate = status.clientCertificateData, let key = status.clientKeyData, !certificate.isEmpty, !key.isEmpty {
            return KubeCredentials(clientCertificatePEM: Array(certificate.utf8), clientKeyPEM: Array(key.utf8))
        }
        throw ClusterError.unsupportedAuthentication(path: path, message: "\(who) gave neither a token nor a client certificate and key")
    }
}
