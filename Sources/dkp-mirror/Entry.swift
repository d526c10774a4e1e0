import ArgumentParser
import Dispatch
import Foundation
import DKP
import Mirror
import OCI
import Registry
import Synchronization

@main
struct Entry {
    /// Parses and runs a command, mapping every failure onto cli.md's exit codes:
    /// 0 success, 1 the operation failed, 2 bad usage or bad input, 128+N stopped by signal N
    /// (130 for Ctrl-C).
    static func main() async {
        limitHeapArenas()
        _ = ProcessClock.started  // the clock of secondsToFirstBlobByte starts here
        let work = Task { () async throws -> Void in
            var command = try DKPMirror.parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        }
        let (interrupts, sources) = Interrupts.install { work.cancel() }
        let result = await work.result
        withExtendedLifetime(sources) {}
        guard case let .failure(error) = result else { return }
        if let signal = interrupts.received {
            // Whatever the cancelled work threw on its way out is a consequence, not the cause.
            Interrupts.exit(signal: signal, forced: false)
        }
        let code = DKPMirror.exitCode(for: error)
        if code == .success || error is ExitCode {
            DKPMirror.exit(withError: error)
        }
        if isUsageError(error) || code == .validationFailure {
            let full = DKPMirror.fullMessage(for: error)
            let message = full.hasPrefix("Error: ") ? String(full.dropFirst(7)) : full
            // The hint right under the line it explains, before the parser's usage text.
            let lines = message.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
            var text = "error: \(lines.first ?? "")\n"
            let arguments = Array(CommandLine.arguments.dropFirst())
            if let hint = shellEatenConstraintHint(arguments) ?? unknownCommandHint(arguments) { text += "hint: \(hint)\n" }
            if lines.count > 1 { text += lines[1] + "\n" }
            FileHandle.standardError.write(Data(text.utf8))
            exit(2)
        }
        FileHandle.standardError.write(Data(ErrorReport(error).lines.utf8))
        exit(1)
    }

    static func isUsageError(_ error: Error) -> Bool {
        switch error {
        case is OCIError, is UsageError, is InventoryError: return true
        case let error as RegistryError: return error.isUsageError
        case let error as DKPError: return error.isUsageError
        case let error as MirrorError:
            if case .invalidInput = error { return true }
            return false
        default: return false
        }
    }

}

/// The constraint flags of pull, and how their values look when the shell ate an unquoted
/// `>=`/`<=` as a redirection: the next word, usually the bundle path, became the value
/// (`--include-platform >=1.64 ./bundle`), or the module's constraint is a path (d8 names this too).
func shellEatenConstraintHint(_ arguments: [String]) -> String? {
    guard arguments.first == "pull" else { return nil }
    let flags = ["--include-platform", "--since-version", "-i", "--include-module", "--include-package", "--include-plugin"]
    var index = arguments.startIndex
    while index < arguments.endIndex {
        let argument = arguments[index]
        let (flag, inlineValue) = argument.hasPrefix("--") && argument.contains("=")
            ? (String(argument.prefix { $0 != "=" }), String(argument.drop { $0 != "=" }.dropFirst()))
            : (argument, nil)
        index += 1
        guard flags.contains(flag) else { continue }
        guard let value = inlineValue ?? (index < arguments.endIndex ? arguments[index] : nil) else { break }
        if inlineValue == nil { index += 1 }
        let constraint = flag == "--include-platform" || flag == "--since-version" ? value : String(value.drop { $0 != "@" }.dropFirst())
        var isDirectory: ObjCBool = false
        let looksLikePath = constraint.contains("/") || (!constraint.isEmpty && FileManager.default.fileExists(atPath: constraint, isDirectory: &isDirectory) && isDirectory.boolValue)
        // `--include-platform >=1.64 bundle`: the value is the bundle's name, not even the start
        // of a version or constraint (a typo such as 1.6x would start like one).
        let startsLikeAVersion = constraint.first.map { $0.isNumber || "v=<>~^!".contains($0) } ?? true
        let platformValueIsAName = (flag == "--include-platform" || flag == "--since-version") && !startsLikeAVersion
        if looksLikePath || platformValueIsAName {
            return "\(flag) got '\(value)', \(looksLikePath ? "a path" : "a name, not a version"): "
                + "an unquoted >= or <= was taken by the shell as a redirection, so the next word became its value; "
                + "quote the constraint, e.g. \(flag) '\(flag == "--include-platform" || flag == "--since-version" ? "" : "NAME@")>=1.64 <1.68'"
        }
    }
    return nil
}

/// `dkp-mirror verfy ...`: the command meant, when the first word is no command but close to one
/// (at most two letters off).
func unknownCommandHint(_ arguments: [String]) -> String? {
    guard let word = arguments.first, !word.hasPrefix("-") else { return nil }
    let names = DKPMirror.configuration.subcommands.compactMap { $0.configuration.commandName }
    guard !names.contains(word) else { return nil }
    let distances = names.map { (name: $0, distance: editDistance(word, $0)) }
    guard let closest = distances.min(by: { $0.distance < $1.distance }), closest.distance <= 2 else { return nil }
    return "'\(word)' is no command; did you mean '\(closest.name)'? (dkp-mirror --help lists them)"
}

/// Levenshtein distance, for the suggestion above.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
    var row = Array(0...b.count)
    for i in 1...a.count {
        var previous = row[0]
        row[0] = i
        for j in 1...b.count {
            let current = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
            previous = current
        }
    }
    return row[b.count]
}

/// Bad usage found after parsing (a missing password, a malformed target): exit 2.
struct UsageError: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}

struct DKPMirror: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dkp-mirror",
        abstract: "Mirror Deckhouse Kubernetes Platform images for air-gapped clusters.",
        version: BuildInfo.versionLine,
        subcommands: [PullCommand.self, VerifyCommand.self, PushCommand.self, StatusCommand.self, InventoryCommand.self, CopyCommand.self, InspectCommand.self, TagsCommand.self, DetectCommand.self])
}

/// Ctrl-C (SIGINT) and SIGTERM: the first one cancels the running command (transfers stop,
/// nothing unfinished gets its final name, journals already hold every entry that is on disk),
/// then the process says so on one line and exits with 128+N. If the work has not wound down
/// within `grace`, or on a second signal, the process exits at once: that is as safe as
/// `kill -9`, which a re-run also resumes from.
final class Interrupts: Sendable {
    static let grace: DispatchTimeInterval = .milliseconds(1500)

    private let state = Mutex<Int32?>(nil)
    private let queue = DispatchQueue(label: "dkp-mirror.signals")

    /// The first signal received, if any.
    var received: Int32? { state.withLock { $0 } }

    /// Starts listening for SIGINT and SIGTERM; `cancel` runs (once) on the first of them.
    /// The sources listen while the caller keeps them.
    static func install(cancel: @escaping @Sendable () -> Void) -> (Interrupts, [any DispatchSourceSignal]) {
        let interrupts = Interrupts()
        var sources: [any DispatchSourceSignal] = []
        for signo in [SIGINT, SIGTERM] {
            signal(signo, SIG_IGN)  // delivered to the dispatch source instead of killing the process
            let source = DispatchSource.makeSignalSource(signal: signo, queue: interrupts.queue)
            source.setEventHandler { interrupts.signalled(signo, cancel: cancel) }
            source.resume()
            sources.append(source)
        }
        return (interrupts, sources)
    }

    private func signalled(_ signo: Int32, cancel: @Sendable () -> Void) {
        let first = state.withLock { received -> Bool in
            guard received == nil else { return false }
            received = signo
            return true
        }
        guard first else {
            Self.exit(signal: signo, forced: true)
        }
        cancel()
        queue.asyncAfter(deadline: .now() + Self.grace) { Self.exit(signal: signo, forced: true) }
    }

    private static let exiting = Mutex(false)

    /// Prints the line and exits with 128+N; the first caller does, a second (the grace timer
    /// racing the graceful path) waits for the process to end.
    static func exit(signal signo: Int32, forced: Bool) -> Never {
        let first = exiting.withLock { exiting -> Bool in
            defer { exiting = true }
            return !exiting
        }
        guard first else {
            while true { pause() }
        }
        let note = forced ? " (stopped without waiting for the transfers to wind down)" : ""
        // Only what transfers resumes; a check or a listing starts over, and says so.
        let resumes = ["pull", "push", "copy"].contains(CommandLine.arguments.dropFirst().first ?? "")
        let line = resumes ? "interrupted; run the same command again to resume" : "interrupted; nothing was written, run the command again to start over"
        writeErr("\(line)\(note)\n")
        if forced { _exit(128 + signo) }
        Foundation.exit(128 + signo)
    }
}
