import Bundle
import Foundation

/// The companions of a bundle's tars that verify reads: `SHA256SUMS`, `<file>.gostsum`, and
/// names a tar holds twice.
extension BundleVerifier {
    /// SHA256SUMS (coreutils format), when the bundle has one: name -> expected hex, and the
    /// problems of the file itself (unreadable lines, listed files that are missing).
    func readSHA256SUMS() -> (expected: [String: String], problems: [VerifyProblem]) {
        let path = directory + "/SHA256SUMS"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return ([:], []) }
        var problems: [VerifyProblem] = []
        var expected = [String: String]()
        for listed in Checksums.listedFiles(inSHA256SUMS: text) {
            switch listed {
            case let .unreadable(line):
                problems.append(VerifyProblem(check: "SHA256SUMS", message: "SHA256SUMS: unreadable line '\(line.prefix(80))'"))
            case let .outside(name):
                problems.append(VerifyProblem(check: "SHA256SUMS", message: "SHA256SUMS lists '\(name)', outside the bundle directory: not read"))
            case let .file(name, hex):
                guard FileManager.default.fileExists(atPath: directory + "/" + name) else {
                    problems.append(VerifyProblem(check: "SHA256SUMS", message: "\(name) is listed in SHA256SUMS but missing"))
                    continue
                }
                expected[name] = hex
            }
        }
        return (expected, problems)
    }

    /// Without SHA256SUMS or `.gostsum` files every blob is still checked against its digest;
    /// what cannot be seen is a whole tar gone, which the operator is told.
    func noListsWarning(gostsums: [String: String]) -> String? {
        guard !FileManager.default.fileExists(atPath: directory + "/SHA256SUMS"), gostsums.isEmpty else { return nil }
        return "the bundle has no SHA256SUMS (nor .gostsum files): whole files are not checked, "
            + "so a tar missing from the copy goes unseen; copy SHA256SUMS along with the tars"
    }

    /// With a SHA256SUMS, every tar file (or chunk) of the bundle it does not list: the file is
    /// not of the pull that wrote SHA256SUMS (another pull's, or put there by hand).
    func unlistedFileProblems(listed: [String: String]) -> [VerifyProblem] {
        guard FileManager.default.fileExists(atPath: directory + "/SHA256SUMS") else { return [] }
        return bundle.tars.flatMap(\.files).map { ($0 as NSString).lastPathComponent }.sorted()
            .filter { listed[$0] == nil }
            .map { VerifyProblem(check: "SHA256SUMS", message: "\($0) is not listed in SHA256SUMS: it is not part of the pull that wrote it "
                + "(left by another pull, or added by hand); remove it, or pull into an empty directory") }
    }

    /// Every `<file>.gostsum` (Streebog-256, as d8 writes them): file name -> expected hex.
    func readGostsums() -> (expected: [String: String], problems: [VerifyProblem]) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0.hasSuffix(".gostsum") }.sorted() ?? []
        var expected = [String: String]()
        var problems: [VerifyProblem] = []
        for name in names {
            let file = String(name.dropLast(".gostsum".count))
            guard FileManager.default.fileExists(atPath: directory + "/" + file) else {
                problems.append(VerifyProblem(check: "gostsum", message: "\(name): the file it is for, \(file), is missing"))
                continue
            }
            let hex = ((try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
            guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
                problems.append(VerifyProblem(check: "gostsum", message: "\(name) does not hold a Streebog-256 digest (64 hex digits)"))
                continue
            }
            expected[file] = hex
        }
        return (expected, problems)
    }

    /// Names a tar holds more than once: extracting it keeps the later one, so the earlier is
    /// dead weight at best and a substitution at worst.
    func duplicateEntryProblems() -> [VerifyProblem] {
        bundle.duplicateEntries.map {
            VerifyProblem(check: "tar", message: "\($0.tar) holds '\($0.name)' \($0.count) times; a bundle tar holds each name once "
                + "(extracting it keeps the last copy, which is the one checked); pull or copy \($0.tar) again")
        }
    }
}
