import Bundle
import Cluster
import DKP
import Foundation
import Mirror
import Registry

/// How a failure reaches the operator: one line what failed, one line what to do (by the
/// error's category, as d8 gives hints: a cut connection, TLS, 401, 403, 429, 5xx, DNS, a
/// timeout, refused connections, a full disk, permissions, unknown manifests or repositories,
/// no release channels).
struct ErrorReport: Equatable {
    var failure: String
    var hint: String?

    /// `error: ...` and, when there is one, `hint: ...`.
    var lines: String { "error: \(failure)\n" + (hint.map { "hint: \($0)\n" } ?? "") }

    static let diskFullHint = "free space there (or choose another directory), then run the same command again: it resumes where it stopped"
    static let permissionHint = "check that this user may write there (owner, mode, a read-only mount)"

    init(failure: String, hint: String?) {
        self.failure = failure
        self.hint = hint
    }

    init(_ error: Error) {
        switch error {
        case let error as RegistryError:
            self.init(failure: error.failure, hint: error.hint)
        case let error as BundleError:
            self.init(bundle: error)
        case let error as ClusterError:
            // Its messages already say what to do; a registry's hint for "not found" would mislead.
            self.init(failure: error.description, hint: nil)
        case let DKPError.suspended(message):
            self.init(splitting: message, fallback: "pass --ignore-suspend to mirror the suspended channel anyway")
        case let MirrorError.corruptBlob(message):
            self.init(failure: message, hint: "the bundle is damaged: `dkp-mirror verify` names every damaged file; carry those again, or pull again (it resumes)")
        default:
            let message = String(describing: error)
            self.init(failure: message, hint: Self.hint(forMessage: message))
        }
    }

    private init(bundle error: BundleError) {
        switch error {
        case let .diskFull(path):
            self.init(failure: "no space left on the device holding \(path)",
                      hint: Self.diskFullHint)
        case let .io(_, _, code) where [EACCES, EPERM, EROFS].contains(code):
            self.init(failure: error.description, hint: Self.permissionHint)
        default:
            let message = error.description
            self.init(failure: message, hint: Self.hint(forMessage: message))
        }
    }

    /// A message of the form "what failed; what to do" cut in two; `fallback` when it has no "; ".
    private init(splitting message: String, fallback: String) {
        if let cut = message.range(of: "; ", options: .backwards) {
            self.init(failure: String(message[..<cut.lowerBound]), hint: String(message[cut.upperBound...]))
        } else {
            self.init(failure: message, hint: fallback)
        }
    }

    /// A hint from the words of a message that reached here as text (an error wrapped by the
    /// operation that met it); nil when the message names no category, or already says what to do.
    static func hint(forMessage message: String) -> String? {
        let lower = message.lowercased()
        func status(_ code: Int) -> Bool { lower.contains("status \(code)") }
        let hint: String?
        if lower.contains("no space left") {
            hint = Self.diskFullHint
        } else if lower.contains("permission denied") || lower.contains("read-only file system") {
            hint = Self.permissionHint
        } else if lower.contains("does not resolve") {
            hint = "fix the host name, or go through a proxy that can resolve it (HTTPS_PROXY, --proxy)"
        } else if lower.contains("stopped answering") || lower.contains("timed out") {
            hint = RegistryError.stalledHint
        } else if lower.contains("mid-response") || lower.contains("mid-request") || lower.contains("connection reset") {
            hint = "the network or a proxy cut the connection: run the same command again (it resumes)"
        } else if lower.contains("connection refused") {
            hint = "check the address and that the registry is running"
        } else if let code = [401, 403, 404, 408, 409, 412, 413, 429, 400].first(where: status) {
            hint = RegistryError.hint(status: code)
        } else if (500...599).contains(where: status) {
            hint = RegistryError.hint(status: 500)
        } else if lower.contains("release-channel") || lower.contains("release channel") {
            hint = "check --source: it names an edition's repository (e.g. registry.deckhouse.ru/deckhouse/ee), which the license key must allow; `dkp-mirror tags SOURCE/release-channel` lists its channels"
        } else if lower.contains("not found") || lower.contains("does not exist") {
            hint = RegistryError.hint(status: 404)
        } else {
            hint = nil
        }
        guard let hint, !message.contains(hint) else { return nil }
        return hint
    }
}
