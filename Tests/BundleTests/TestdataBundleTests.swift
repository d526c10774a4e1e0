import Bundle
import Foundation
import Testing
import TestSupport

/// testdata/bundles and testdata/hostile: the files on disk are what `dkp-dev write-testdata`
/// writes (so the README's "how it was made" holds), every generation of bundle reads as the
/// same references, and every hostile tar is refused or read without harm.
@Suite struct TestdataBundleTests {
    static let bundles = RepoPaths.testdata.appendingPathComponent("bundles").path
    static let hostile = RepoPaths.testdata.appendingPathComponent("hostile").path

    @Test func theGeneratorWritesExactlyWhatTestdataHolds() throws {
        let scratch = try TarTestTools.scratch("testdata-again")
        defer { TarTestTools.cleanup(scratch) }
        try TestdataBundles.write(to: scratch + "/bundles")
        try TestdataHostileTars.write(to: scratch + "/hostile")
        for (committed, written) in [(Self.bundles, scratch + "/bundles"), (Self.hostile, scratch + "/hostile")] {
            let names = RepoPaths.files(under: committed).filter { $0 != "README.md" }
            #expect(names == RepoPaths.files(under: written), "run `dkp-dev write-testdata` and commit testdata/")
            for name in names {
                let same = FileManager.default.contentsEqual(atPath: committed + "/" + name, andPath: written + "/" + name)
                #expect(same, "\(name) differs from what dkp-dev write-testdata writes")
            }
        }
    }

    /// `path tag digest` of every tag a bundle gives, by the rule push and verify share.
    static func references(of directory: String) throws -> [String] {
        let index = try BundleIndex.open(directory: directory)
        return index.layouts.flatMap { layout in
            layout.resolvedTags().tags.map { "\(layout.path.isEmpty ? "." : layout.path) \($0.tag) \($0.descriptor.digest)" }
        }.sorted()
    }

    @Test(arguments: TestdataBundles.Generation.allCases)
    func everyGenerationReadsAsTheSameReferences(_ generation: TestdataBundles.Generation) throws {
        let expected = try String(contentsOfFile: Self.bundles + "/references.txt", encoding: .utf8)
            .split(separator: "\n").map(String.init)
        let directory = Self.bundles + "/" + generation.rawValue
        #expect(try Self.references(of: directory) == expected)
        let index = try BundleIndex.open(directory: directory)
        #expect(index.duplicateEntries.isEmpty)
        #expect(index.layouts.map(\.path) == ["", "install", "modules/console", "modules/console/release", "release-channel", "security/trivy-db"])
        switch generation {
        case .chunked: #expect(index.tars.allSatisfy { $0.isChunked && $0.files.count > 1 })
        case .wholeTree: #expect(index.tars.map(\.name) == ["bundle.tar"])
        default: #expect(index.tars.map(\.name) == ["module-console.tar", "platform.tar", "security.tar"])
        }
    }

    /// What opening each hostile tar as `platform.tar` must give: refused as bad input with a
    /// message holding the text, or opened (what is wrong inside is verify's to find).
    enum Outcome { case refused(String), opens }
    static let outcomes: [String: Outcome] = [
        "absolute-entry.tar": .refused("'/etc/passwd'"),
        "bad-header-checksum.tar": .refused("not a tar archive"),
        "deeply-nested-index.tar": .refused("index.json is not a valid OCI index"),
        "dotdot-entry.tar": .refused("'../x'"),
        "dotdot-inside-entry.tar": .refused("'blobs/../../etc/x'"),
        "duplicate-index.tar": .opens,
        "garbage.tar": .refused("not a tar archive"),
        "hardlink-blob.tar": .opens,
        "huge-size-in-index.tar": .refused("index.json is not a valid OCI index"),
        "invalid-utf8-index.tar": .refused("index.json is not a valid OCI index"),
        "missing-blob.tar": .opens,
        "negative-base256-size.tar": .refused("negative size"),
        "size-beyond-end.tar": .refused("beyond the end of the tar"),
        "symlink-blob.tar": .opens,
        "symlink-escape-entry.tar": .refused("'../evil'"),
        "truncated-in-data.tar": .refused("beyond the end of the tar"),
        "truncated-in-header.tar": .refused("beyond the end of the tar"),
        "wrong-blob-bytes.tar": .opens,
    ]

    @Test func everyHostileTarHasAnOutcome() {
        let names = RepoPaths.files(under: Self.hostile).filter { $0.hasSuffix(".tar") }
        #expect(names == Self.outcomes.keys.sorted())
    }

    @Test(arguments: outcomes.keys.sorted())
    func hostileTarAsPlatformTar(_ name: String) throws {
        let directory = try TarTestTools.scratch("hostile")
        defer { TarTestTools.cleanup(directory) }
        try FileManager.default.copyItem(atPath: Self.hostile + "/" + name, toPath: directory + "/platform.tar")
        let outcome = try #require(Self.outcomes[name])
        do {
            let index = try BundleIndex.open(directory: directory)
            guard case .opens = outcome else { Issue.record("\(name) opened with \(index.layouts.count) layouts"); return }
            // Links are never followed: no blob of it lies outside platform.tar, none holds bytes of a link target.
            for layout in index.layouts {
                for digest in index.blobs(in: layout) {
                    let location = try #require(index.blob(digest, in: layout))
                    #expect(location.segments.allSatisfy { $0.path == directory + "/platform.tar" })
                }
            }
        } catch let error as BundleError {
            guard case .refused(let text) = outcome else { Issue.record("\(name) refused: \(error)"); return }
            #expect(error.isBadInput, "\(error)")
            #expect(error.description.contains(text), "\(error)")
            #expect(error.description.contains("platform.tar"), "names the tar: \(error)")
        }
    }
}
