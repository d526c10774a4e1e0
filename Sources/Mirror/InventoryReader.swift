import Bundle
import Foundation
import OCI
import Streams

extension Inventory {
    /// Reads and checks an inventory file (see ``Inventory`` for the format).
    /// - Throws: ``InventoryError`` naming the file and line for anything unreadable or wrong.
    public init(contentsOf path: String) throws {
        let bytes: [UInt8]
        do {
            bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw InventoryError(path: path, line: nil, problem: "cannot be read (\((error as NSError).localizedDescription))")
        }
        try self.init(parsing: bytes, path: path)
    }

    /// Parses an inventory's bytes; `path` names the file in errors.
    public init(parsing bytes: [UInt8], path: String = "(inventory)") throws {
        let reader = InventoryReader(path: path)
        let body = try reader.checkedBody(bytes)
        var builder = InventoryBuilder()
        var header = (source: Source?.none, created: Date?.none)
        var sawItem = false
        var number = 0
        for line in body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
            number += 1
            guard let text = String(validating: line, as: UTF8.self) else { throw reader.error(number, "is not UTF-8 text") }
            if number == 1 {
                try reader.checkMagic(text)
                continue
            }
            if text.isEmpty || text.hasPrefix("#") { continue }
            if text.hasPrefix("manifest ") || text.hasPrefix("blob ") {
                guard header.source != nil, header.created != nil else {
                    throw reader.error(number, "an item comes before the 'source' and 'created' lines")
                }
                try reader.item(text, line: number, into: &builder)
                sawItem = true
                continue
            }
            guard !sawItem else { throw reader.error(number, "'\(InventoryReader.shown(text))' is not an item line (manifest or blob)") }
            try reader.header(text, line: number, into: &header)
        }
        guard let source = header.source, let created = header.created else {
            throw InventoryError(path: path, line: nil, problem: "it has no 'source' or no 'created' line")
        }
        self = builder.inventory(source: source, created: created)
    }
}

/// The line-by-line checks of ``Inventory/init(parsing:path:)``.
struct InventoryReader {
    let path: String

    func error(_ line: Int?, _ problem: String) -> InventoryError {
        InventoryError(path: path, line: line, problem: problem)
    }

    /// The bytes before the checksum line (each line ending in "\n"), after checking that line.
    func checkedBody(_ bytes: [UInt8]) throws -> ArraySlice<UInt8> {
        guard !bytes.isEmpty else { throw error(nil, "it is empty") }
        var end = bytes.count
        if bytes[end - 1] == UInt8(ascii: "\n") { end -= 1 }
        let start = bytes[..<end].lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
        let lineNumber = bytes[..<start].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        let last = String(decoding: bytes[start..<end], as: UTF8.self)
        guard last.hasPrefix("sha256 "), let expected = try? Digest(sha256Hex: String(last.dropFirst(7))) else {
            throw error(lineNumber, "the last line is '\(Self.shown(last))', not 'sha256 <64 hex digits>' (the file is cut short or not an inventory)")
        }
        let actual = SHA256.digest(of: Array(bytes[..<start]))
        guard actual == expected else {
            throw error(lineNumber, "the checksum does not match: the lines before it hash to \(actual.hex), the file says \(expected.hex) (the file was changed or damaged)")
        }
        return bytes[..<start]
    }

    func checkMagic(_ text: String) throws {
        let words = text.split(separator: " ", omittingEmptySubsequences: false)
        guard words.count == 2, words[0] == Inventory.magic else {
            throw error(1, "the first line is '\(Self.shown(text))', not '\(Inventory.magic) \(Inventory.currentFormatVersion)': not an inventory file")
        }
        guard words[1] == "\(Inventory.currentFormatVersion)" else {
            throw error(1, "format version \(Self.shown(String(words[1]))) is not supported; this dkp-mirror reads version \(Inventory.currentFormatVersion) (use the dkp-mirror that wrote it, or take the inventory again with this one)")
        }
    }

    func header(_ text: String, line: Int, into header: inout (source: Inventory.Source?, created: Date?)) throws {
        if text.hasPrefix("source ") {
            guard header.source == nil else { throw error(line, "a second 'source' line") }
            let rest = text.dropFirst(7)
            if rest.hasPrefix("registry "), rest.count > 9 {
                header.source = .registry(String(rest.dropFirst(9)))
            } else if rest.hasPrefix("bundle "), rest.count > 7 {
                header.source = .bundle(String(rest.dropFirst(7)))
            } else if rest.hasPrefix("differential "), rest.count > 13 {
                header.source = .differential(String(rest.dropFirst(13)))
            } else {
                throw error(line, "the source is '\(Self.shown(String(rest)))', not 'registry HOST/PATH', 'bundle DIR' or 'differential ...'")
            }
        } else if text.hasPrefix("created ") {
            guard header.created == nil else { throw error(line, "a second 'created' line") }
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime]
            guard let date = formatter.date(from: String(text.dropFirst(8))) else {
                throw error(line, "'\(Self.shown(text))' is not 'created YYYY-MM-DDTHH:MM:SSZ'")
            }
            header.created = date
        } else {
            throw error(line, "'\(Self.shown(text))' is not a 'source', 'created', 'manifest' or 'blob' line")
        }
    }

    /// `manifest|blob sha256:<hex> <size> <repository>`.
    func item(_ text: String, line: Int, into builder: inout InventoryBuilder) throws {
        let fields = text.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 4 else {
            throw error(line, "'\(Self.shown(text))' has \(fields.count) fields; an item is 'manifest|blob sha256:<hex> SIZE REPOSITORY'")
        }
        let digest: Digest
        do {
            digest = try Digest(parsing: String(fields[1]))
        } catch {
            throw self.error(line, "\(error)")
        }
        guard let size = Int64(fields[2]), size >= 0, fields[2].allSatisfy(\.isASCII) else {
            throw error(line, "the size '\(Self.shown(String(fields[2])))' is not a whole number of bytes")
        }
        let repository = fields[3] == "." ? "" : String(fields[3])
        if let problem = Inventory.repositoryProblem(repository) {
            throw error(line, problem)
        }
        let added = fields[0] == "manifest" ? builder.addManifest(digest, size: size, repository: repository, replacing: false)
            : builder.addBlob(digest, size: size, repository: repository, replacing: false)
        guard added else { throw error(line, "\(fields[0]) \(digest) is listed twice") }
    }

    /// A piece of a bad line, short and printable, for a message.
    static func shown(_ text: String) -> String {
        let printable = Inventory.oneLine(text)
        return printable.count > 80 ? printable.prefix(80) + "..." : printable
    }
}

extension Inventory {
    /// Why `repository` (a path below TARGET, "" for the root) cannot be an item's repository, or nil.
    static func repositoryProblem(_ repository: String) -> String? {
        repository.isEmpty ? nil : Reference.problem(repository: repository)
    }
}
