import Bundle
import Foundation
import OCI

/// The small bundles of testdata/bundles (`dkp-dev write-testdata`): one tiny edition of
/// v1.69.3 written as every generation of the format push reads (dkp-source-and-bundle.md §2),
/// so every generation must push the same references (`references.txt`). Byte for byte the
/// same on every run: fixed contents, d8's tar headers (mode 0777, mtime 0), no randomness.
public enum TestdataBundles {
    public static let edition = "registry.deckhouse.ru/deckhouse/ee"
    public static let version = "v1.69.3"

    /// The generations, each a folder of testdata/bundles.
    public enum Generation: String, CaseIterable, Sendable {
        /// platform.tar, module-console.tar, security.tar with the nested tree, and
        /// `SHA256SUMS` as dkp-mirror writes it.
        case current
        /// module-console.tar with the module's layouts at the tar root; index.json with the
        /// older top-level media type (the OCI index's).
        case olderModuleLayout = "older-module-layout"
        /// As above, and security.tar with `trivy-db/` at the tar root.
        case olderSecurityLayout = "older-security-layout"
        /// One tar (`bundle.tar`) with the whole tree, as `tar -C dir .` writes it: names with
        /// a leading `./` and an entry per directory.
        case wholeTree = "whole-tree"
        /// The current tars cut into 4,096-byte chunk files (`platform.tar.0000.chunk`, ...),
        /// with `SHA256SUMS` over the chunks.
        case chunked
        /// The current tars with a `<tar>.gostsum` each (Streebog-256, lowercase hex, no
        /// newline) and no `SHA256SUMS`, as `d8 mirror pull --gost-digest` leaves them.
        case gostsum
    }

    /// The size of each chunk file of the chunked generation.
    public static let chunkSize = 4096

    /// Writes every generation into `directory/<generation>/` and the references they all
    /// carry into `directory/references.txt`.
    public static func write(to directory: String) throws {
        let content = Content()
        for generation in Generation.allCases {
            let folder = directory + "/" + generation.rawValue
            try? FileManager.default.removeItem(atPath: folder)
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try write(generation, content, to: folder)
        }
        let lines = content.layouts.flatMap { layout in
            layout.refs.map { "\(layout.path.isEmpty ? "." : layout.path) \($0.tag) \($0.image.digest)\n" }
        }.sorted()
        try Data(lines.joined().utf8).write(to: URL(fileURLWithPath: directory + "/references.txt"))
    }

    static func write(_ generation: Generation, _ content: Content, to folder: String) throws {
        switch generation {
        case .current, .chunked, .gostsum:
            let tars = [("platform.tar", content.platform(root: "")), ("module-console.tar", content.module(root: "modules/console")),
                        ("security.tar", content.security(root: "security"))]
            var files: [String] = []
            for (name, entries) in tars {
                let bytes = RawTar.tar(entries)
                files += try RawTar.write(bytes, to: folder + "/" + name, chunkSize: generation == .chunked ? chunkSize : nil)
            }
            if generation == .gostsum {
                for file in files {
                    let hex = try Checksums.digests(ofFile: file, streebog: true).streebog256Hex ?? ""
                    try Data(hex.utf8).write(to: URL(fileURLWithPath: file + ".gostsum"))
                }
            } else {
                try Checksums.writeSHA256SUMS(directory: folder, files: files)
            }
        case .olderModuleLayout, .olderSecurityLayout:
            let securityRoot = generation == .olderSecurityLayout ? "" : "security"
            let tars = [("platform.tar", content.platform(root: "")), ("module-console.tar", content.module(root: "")),
                        ("security.tar", content.security(root: securityRoot))]
            for (name, entries) in tars {
                try RawTar.write(RawTar.tar(entries.map(olderIndexMediaType)), to: folder + "/" + name)
            }
        case .wholeTree:
            let entries = content.platform(root: "") + content.module(root: "modules/console") + content.security(root: "security")
            try RawTar.write(wholeTreeTar(entries.map(olderIndexMediaType)), to: folder + "/bundle.tar")
        }
    }

    /// index.json as older d8 wrote it: the top-level media type of an OCI index.
    static func olderIndexMediaType(_ entry: RawTar.Entry) -> RawTar.Entry {
        guard entry.name.hasSuffix("index.json") else { return entry }
        let text = String(decoding: entry.data, as: UTF8.self)
        let older = text.replacingOccurrences(of: "\"mediaType\":\"\(MediaType.ociLayout.rawValue)\"",
                                              with: "\"mediaType\":\"\(MediaType.ociIndex.rawValue)\"")
        return (entry.name, Array(older.utf8))
    }

    /// The tree as `tar --format=gnu -C dir .` stores it: `./` first, a directory entry before
    /// the first file in it, every name with a leading `./`.
    static func wholeTreeTar(_ entries: [RawTar.Entry]) -> [UInt8] {
        var tail = RawTar.directory("./")
        var made: Set<String> = []
        for entry in entries {
            let parts = entry.name.split(separator: "/").dropLast()
            for depth in parts.indices {
                let directory = "./" + parts[...depth].joined(separator: "/") + "/"
                if made.insert(directory).inserted { tail += RawTar.directory(directory) }
            }
            tail += TarHeader.encode(name: "./" + entry.name, size: Int64(entry.data.count)) + entry.data
                + RawTar.padding(entry.data.count)
        }
        return RawTar.tar([], tail: tail)
    }
}
