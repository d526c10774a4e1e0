import Bundle
import Foundation
import OCI
import Testing
import TestSupport

/// Hostile bundle tars and image layers (what `scripts/fuzz.sh` throws at `BundleIndex` and
/// `TarReader` at random, plus entries that try to escape their folder): each is refused
/// with a `BundleError` naming the tar, or the offending entry is ignored; nothing outside
/// the tar is ever read.
@Suite struct BundleFuzzRegressionTests {
    typealias F = BundleIndexFixtures

    /// Writes `bytes` as platform.tar of a fresh bundle and opens it.
    static func open(_ bytes: [UInt8]) throws -> Result<BundleIndex, BundleError> {
        let dir = try TarTestTools.scratch("fuzz-bundle")
        defer { TarTestTools.cleanup(dir) }
        try TarTestTools.write(dir + "/platform.tar", bytes)
        do { return .success(try BundleIndex.open(directory: dir)) } catch { return .failure(error) }
    }

    static func expectRefused(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation,
                              _ check: (BundleError) -> Bool = { _ in true }) throws {
        switch try open(bytes) {
        case .success(let index):
            Issue.record("opened with \(index.layouts.count) layouts", sourceLocation: sourceLocation)
        case .failure(let error):
            #expect(check(error), "\(error)", sourceLocation: sourceLocation)
            #expect(error.isBadInput, "\(error)", sourceLocation: sourceLocation)
            #expect(error.description.contains("platform.tar"), "names the tar: \(error)", sourceLocation: sourceLocation)
            #expect(error.description.count < 2_000, "\(error.description.prefix(200))", sourceLocation: sourceLocation)
        }
    }

    static let layoutFile = Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8)

    // MARK: - index.json

    @Test(arguments: [1_000, 100_000])
    func deeplyNestedIndexJSONIsRefused(_ depth: Int) throws {
        let index = #"{"schemaVersion":2,"manifests":"# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
        try Self.expectRefused(RawTar.tar([("oci-layout", Self.layoutFile), ("index.json", Array(index.utf8))])) {
            $0.description.contains("index.json is not a valid OCI index")
        }
        let open = String(repeating: #"{"a":"#, count: depth)
        try Self.expectRefused(RawTar.tar([("oci-layout", Self.layoutFile), ("index.json", Array(open.utf8))]))
        // Refused as not a layout file, or as larger than any oci-layout file may be.
        try Self.expectRefused(RawTar.tar([("oci-layout", Array(open.utf8)), ("index.json", Array("{}".utf8))])) {
            $0.description.contains("oci-layout")
        }
    }

    @Test(arguments: ["99999999999999999999999", "1e400", "-1"])
    func hugeNumbersInIndexJSONAreRefused(_ number: String) throws {
        let hex = String(repeating: "a", count: 64)
        let bodies = [
            #"{"schemaVersion":\#(number),"manifests":[]}"#,
            #"{"schemaVersion":2,"manifests":[{"mediaType":"a/b","digest":"sha256:\#(hex)","size":\#(number)}]}"#,
        ]
        for body in bodies {
            try Self.expectRefused(RawTar.tar([("oci-layout", Self.layoutFile), ("index.json", Array(body.utf8))]))
        }
    }

    @Test func invalidUTF8InIndexJSONIsRefused() throws {
        let index = Array(#"{"schemaVersion":2,"mediaType":""#.utf8) + [0xFF, 0xC0, 0xAF] + Array(#"","manifests":[]}"#.utf8)
        try Self.expectRefused(RawTar.tar([("oci-layout", Self.layoutFile), ("index.json", index)]))
    }

    // MARK: - tar headers

    @Test func sizeFieldsBeyondTheTarAreRefused() throws {
        // Octal size far beyond the file; a base-256 size of 2^62; a negative base-256 size.
        let huge: [[UInt8]] = [
            RawTar.octalSize(0o77777777777),
            [0x80, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0],
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF0],
            Array("zzzzzzzzzzz\u{0}".utf8),
        ]
        for size in huge {
            let raw = RawTar.header(name: Array("blobs/sha256/\(String(repeating: "b", count: 64))".utf8), sizeField: size)
            try Self.expectRefused(RawTar.tar(F.platform(), tail: raw + [UInt8](repeating: 0x41, count: 4096)))
        }
    }

    @Test func garbageAndTruncatedTarsAreRefused() throws {
        let good = TarTestTools.sequentialTar(F.platform())
        try Self.expectRefused(Array(repeating: 0xFF, count: 4096))
        try Self.expectRefused(Array(good.prefix(700)))
        try Self.expectRefused(Array(good.prefix(good.count - 1024)))
        var flipped = good
        flipped[148] ^= 0x01  // the first header's checksum
        try Self.expectRefused(flipped)
    }

    @Test func overlongAndInvalidUTF8NamesDoNotCrash() throws {
        // A GNU long name of 1 MiB, a name of invalid UTF-8, a PAX path of 64 KiB.
        let longName = String(repeating: "d/", count: 512 << 10) + "x"
        let badName: [UInt8] = Array("blobs/sha256/".utf8) + [0xFF, 0xFE, 0xC0, 0x80]
        var raw = RawTar.header(name: badName, sizeField: RawTar.octalSize(3)) + [1, 2, 3] + [UInt8](repeating: 0, count: 509)
        let pax = "65555 path=" + String(repeating: "p/", count: 32_768) + "\n"
        raw += RawTar.header(name: Array("PaxHeader".utf8), type: UInt8(ascii: "x"), sizeField: RawTar.octalSize(pax.utf8.count))
        raw += Array(pax.utf8) + [UInt8](repeating: 0, count: Int(TarHeader.paddedSize(Int64(pax.utf8.count))) - pax.utf8.count)
        raw += RawTar.header(name: Array("ignored".utf8), sizeField: RawTar.octalSize(0))
        let bytes = RawTar.tar(F.platform() + [(longName, [9])], tail: raw)
        switch try Self.open(bytes) {
        case .success(let index):
            // The odd entries hold no layout: only the fixture's three layouts are there.
            #expect(index.layouts.map(\.path) == ["", "install", "release-channel"])
        case .failure(let error):
            #expect(error.isBadInput, "\(error)")
        }
    }

    // MARK: - entries that try to leave their folder

    @Test(arguments: ["../x", "a/../../x", "/etc/passwd", "./../x", "blobs/../../../etc/passwd", "//x"])
    func traversalNamesAreRefusedForEveryEntryType(_ name: String) throws {
        for type: UInt8 in [0x30, 0x32, 0x35, 0x31] {  // regular, symlink, directory, hard link
            let raw = RawTar.header(name: Array(name.utf8), type: type, link: type == UInt8(ascii: "0") || type == UInt8(ascii: "5") ? "" : "x",
                                  sizeField: RawTar.octalSize(0))
            try Self.expectRefused(RawTar.tar(F.platform(), tail: raw)) { error in
                guard case let .unsafeEntryName(tar, entry, reason) = error else { return false }
                return tar == "platform.tar" && entry == name && !reason.isEmpty
            }
        }
    }

    /// A symlink or hard link where a blob or index.json should be, pointing at a file outside
    /// the bundle whose digest is the one the layout asks for: the link is not followed.
    @Test func linksToFilesOutsideAreNotFollowed() throws {
        let outside = try TarTestTools.scratch("fuzz-outside")
        defer { TarTestTools.cleanup(outside) }
        let secret = Array("outside the bundle\n".utf8)
        try TarTestTools.write(outside + "/secret", secret)
        let digest = TestCrypto.sha256Hex(secret)
        let index = Array(#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\#(digest)","size":\#(secret.count)}]}"#.utf8)

        for type: UInt8 in [0x32, 0x31] {  // symlink, hard link
            for target in [outside + "/secret", "../../../../../../../../" + outside + "/secret"] {
                let link = RawTar.header(name: Array("blobs/sha256/\(digest)".utf8), type: type, link: target, sizeField: RawTar.octalSize(0))
                let bytes = RawTar.tar([("oci-layout", Self.layoutFile), ("index.json", index)], tail: link)
                switch try Self.open(bytes) {
                case .failure(let error):
                    #expect(error.isBadInput, "\(error)")
                case .success(let bundle):
                    // Indexed at all, the link holds no bytes of the file it names.
                    let layout = try #require(bundle.layouts.first)
                    let digestValue = try Digest(sha256Hex: digest)
                    if let location = bundle.blob(digestValue, in: layout) {
                        #expect(location.size == 0)
                        #expect(location.segments.allSatisfy { $0.path.hasSuffix("platform.tar") })
                        #expect(try bundle.readSmall(location) != secret)
                    }
                }
            }
        }
        // index.json itself as a symlink: the layout has no index, which is refused.
        let indexLink = RawTar.header(name: Array("index.json".utf8), type: UInt8(ascii: "2"), link: outside + "/secret",
                                    sizeField: RawTar.octalSize(0))
        try Self.expectRefused(RawTar.tar([("oci-layout", Self.layoutFile)], tail: indexLink)) {
            $0 == .missingLayoutIndex(tar: "platform.tar", directory: "")
        }
    }

    /// Image layers: entries with `..`, absolute names and links are read in memory only;
    /// a wanted path is never satisfied from outside the layer.
    @Test func layerEntriesThatClimbOutAreIgnored() async throws {
        let outside = try TarTestTools.scratch("fuzz-layer")
        defer { TarTestTools.cleanup(outside) }
        try TarTestTools.write(outside + "/version.json", Array(#"{"version":"evil"}"#.utf8))
        var raw = RawTar.header(name: Array("../deckhouse/version".utf8), sizeField: RawTar.octalSize(4)) + Array("evil".utf8)
            + [UInt8](repeating: 0, count: 508)
        raw += RawTar.header(name: Array("deckhouse/../../deckhouse/edition".utf8), sizeField: RawTar.octalSize(4)) + Array("evil".utf8)
            + [UInt8](repeating: 0, count: 508)
        raw += RawTar.header(name: Array("deckhouse/version.json".utf8), type: UInt8(ascii: "2"), link: outside + "/version.json",
                           sizeField: RawTar.octalSize(0))
        raw += RawTar.header(name: Array("deckhouse/hard".utf8), type: UInt8(ascii: "1"), link: "../../" + outside + "/version.json",
                           sizeField: RawTar.octalSize(0))
        let layer = RawTar.tar([], tail: raw)
        let wanted: Set<String> = ["deckhouse/version", "deckhouse/edition", "deckhouse/version.json"]
        let scan = try await LayerFiles.scan(layer: Chunks(bytes: layer), wanted: wanted)
        #expect(scan.files.isEmpty, "nothing from outside the layer: \(scan.files.keys)")
        #expect(scan.symlinks["deckhouse/version.json"] == outside + "/version.json", "recorded, not followed")
        #expect(scan.shadowed.contains("deckhouse/version.json"))

        // A hard link that names a file outside: a clear error, not the outside file's bytes.
        do {
            let hard = try await LayerFiles.scan(layer: Chunks(bytes: layer), wanted: ["deckhouse/hard"])
            Issue.record("hard link resolved to \(hard.files)")
        } catch let error as LayerError {
            #expect(error.description.contains("deckhouse/hard"), "\(error)")
        }
    }

    struct Chunks: AsyncSequence, Sendable {
        typealias Element = [UInt8]
        let bytes: [UInt8]
        struct AsyncIterator: AsyncIteratorProtocol {
            var rest: ArraySlice<UInt8>
            mutating func next() async throws -> [UInt8]? {
                guard !rest.isEmpty else { return nil }
                let piece = Array(rest.prefix(700))
                rest = rest.dropFirst(700)
                return piece
            }
        }
        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(rest: bytes[...]) }
    }
}
