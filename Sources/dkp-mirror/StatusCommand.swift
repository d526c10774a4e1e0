import ArgumentParser
import Cluster
import DKP
import Foundation

/// `dkp-mirror status`: the registry switch as secret d8-system/registry-state tells it.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the cluster's registry mode switch (secret d8-system/registry-state); exit 0 once it is done.",
        discussion: """
            Prints mode, target_mode and every condition (type, status, reason, and the message as the \
            cluster wrote it, e.g. RegistryContainsRequiredImages: `master-1: 0 of 166 items processed, ...`). \
            Exit 0 when condition Ready is True and mode equals target_mode, 1 otherwise. --wait polls \
            until then, printing only what changed, and gives up after --wait-timeout (exit 1, saying what \
            it was still waiting for). --json prints one JSON object (with --wait, one a line per change).
            """)

    @Option(help: ArgumentHelp("Kubeconfig file (default: the files of $KUBECONFIG, merged as kubectl merges them, else ~/.kube/config).", valueName: "PATH"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("Kubeconfig context to use (default: its current-context).", valueName: "NAME"))
    var context: String?

    @Flag(help: "Poll until the switch is done (Ready is True, mode equals target_mode).")
    var wait = false

    @Option(help: ArgumentHelp("With --wait: give up after this long (90s, 10m, 1h).", valueName: "DURATION"))
    var waitTimeout: String = "30m"

    // For tests: how often --wait reads the secret.
    @Option(help: .hidden)
    var pollInterval: String = "5s"

    @Flag(help: "Print a machine-readable result on stdout.")
    var json = false

    @OptionGroup var network: NetworkOptions

    func validate() throws {
        guard CommonOptions.seconds(ofDuration: waitTimeout) != nil else {
            throw ValidationError("--wait-timeout must be seconds or a duration such as 90s, 10m or 1h, got '\(waitTimeout)'")
        }
        if CommandLine.arguments.contains(where: { $0.hasPrefix("--wait-timeout") }) && !wait {
            throw ValidationError("--wait-timeout goes with --wait")
        }
        guard Self.interval(pollInterval) != nil else { throw ValidationError("--poll-interval: not a duration: '\(pollInterval)'") }
    }

    /// A poll interval; below a second is allowed (tests).
    static func interval(_ text: String) -> Duration? {
        if text.hasSuffix("ms"), let ms = Int(text.dropLast(2)), ms > 0 { return .milliseconds(ms) }
        return CommonOptions.seconds(ofDuration: text).map { .seconds($0) }
    }

    func run() async throws {
        let config: Kubeconfig
        do {
            config = try await Kubeconfig.load(path: kubeconfig, context: context).resolvingCredentials()
        } catch let error as ClusterError where error.isUsageError {
            throw UsageError(error.description)
        }
        let client = try KubeClient(kubeconfig: config, proxies: network.proxies, trustRoots: network.trustRoots)
        do {
            let done = wait ? try await waitForSwitch(client) : try await once(client)
            await client.shutdown()
            if !done { throw ExitCode(1) }
        } catch {
            await client.shutdown()
            throw error
        }
    }

    private func once(_ client: KubeClient) async throws -> Bool {
        let state = try await client.registryState()
        var printer = StatusPrinter(json: json)
        printer.show(state)
        return state.isDone
    }

    private func waitForSwitch(_ client: KubeClient) async throws -> Bool {
        let timeout = Duration.seconds(CommonOptions.seconds(ofDuration: waitTimeout) ?? 1800)
        let interval = Self.interval(pollInterval) ?? .seconds(5)
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var printer = StatusPrinter(json: json)
        var lastProblem: String?
        var last: RegistryState?
        while true {
            do {
                let state = try await client.registryState()
                lastProblem = nil
                printer.show(state)
                last = state
                if state.isDone { return true }
            } catch let error as ClusterError {
                // No access, or credentials the plugin could not renew, will not pass by waiting (and
                // running an interactive login plugin again at every poll would be worse); the rest may
                // (a restarting API server).
                switch error {
                case .unauthorized, .forbidden, .credentialsUnavailable, .unsupportedAuthentication, .invalidKubeconfig: throw error
                default: break
                }
                let text = error.description
                if text != lastProblem { writeErr("warning: \(text) (still waiting)\n") }
                lastProblem = text
            }
            if clock.now + interval > deadline { break }
            try await Task.sleep(for: interval)
        }
        let what = last.map(\.pending) ?? (lastProblem ?? "secret d8-system/registry-state")
        writeErr("error: gave up after --wait-timeout \(waitTimeout), still waiting for the switch to finish: \(what)\n")
        return false
    }
}

/// Prints a state, then (for --wait) only what changed since the last one printed.
struct StatusPrinter {
    var json: Bool
    private var last: RegistryState?

    init(json: Bool) { self.json = json }

    mutating func show(_ state: RegistryState) {
        defer { last = state }
        if json {
            guard state != last else { return }
            printCompactJSON(StatusJSON(state))
            return
        }
        var lines: [String] = []
        if last?.mode != state.mode { lines.append("mode: \(state.mode)") }
        if last?.targetMode != state.targetMode { lines.append("target_mode: \(state.targetMode)") }
        for condition in state.conditions {
            let before = last?.condition(condition.type)
            guard before?.status != condition.status || before?.reason != condition.reason || before?.message != condition.message else { continue }
            lines.append("condition \(condition.type): status \(condition.status)\(condition.reason.isEmpty ? "" : ", reason \(condition.reason)")")
            // The message verbatim, each of its lines indented under the condition.
            for line in condition.message.split(separator: "\n", omittingEmptySubsequences: false) where !condition.message.isEmpty {
                lines.append("  \(line)")
            }
        }
        guard !lines.isEmpty else { return }
        if last != nil { lines.insert("--- \(ISO8601DateFormatter().string(from: Date())) changed:", at: 0) }
        lines.append(state.isDone ? "switch done: mode \(state.mode), Ready is True" : "switch not done: \(state.pending)")
        // Straight to the file descriptor: a --wait piped into a log shows each change at once.
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}

/// `--json`: the state and whether the switch is done.
struct StatusJSON: Encodable {
    var mode: String
    var target_mode: String
    var done: Bool
    var conditions: [RegistryState.Condition]

    init(_ state: RegistryState) {
        mode = state.mode
        target_mode = state.targetMode
        done = state.isDone
        conditions = state.conditions
    }
}

func printCompactJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value) else { return }
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}
