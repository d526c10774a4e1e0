import ArgumentParser
import Foundation
import DKP
import Mirror
import OCI
import Registry

@main
struct Entry {
    /// Parses and runs a command, mapping every failure onto cli.md's exit codes:
    /// 0 success, 1 the operation failed, 2 bad usage or bad input.
    static func main() async {
        do {
            var command = try DKPMirror.parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = DKPMirror.exitCode(for: error)
            if code == .success || error is ExitCode {
                DKPMirror.exit(withError: error)
            }
            if isUsageError(error) || code == .validationFailure {
                let message = DKPMirror.fullMessage(for: error)
                FileHandle.standardError.write(Data("error: \(message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message)\n".utf8))
                exit(2)
            }
            FileHandle.standardError.write(Data("error: \(describe(error))\n".utf8))
            exit(1)
        }
    }

    static func isUsageError(_ error: Error) -> Bool {
        switch error {
        case is OCIError, is UsageError: return true
        case let error as RegistryError: return error.isUsageError
        case let error as DKPError: return error.isUsageError
        case let error as MirrorError:
            if case .invalidInput = error { return true }
            return false
        default: return false
        }
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case let error as CustomStringConvertible: return error.description
        default: return "\(error)"
        }
    }
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
        subcommands: [PullCommand.self, VerifyCommand.self, PushCommand.self, CopyCommand.self, InspectCommand.self, TagsCommand.self, DetectCommand.self])
}
