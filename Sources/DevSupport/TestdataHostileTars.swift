import Foundation
import OCI
import Streams

/// The hostile tars of testdata/hostile (`dkp-dev write-testdata`): each is read as a
/// `platform.tar` and starts as one small good layout (the testdata edition's release channel
/// image at the tar root), then goes wrong in one way: entries that try
/// to leave the bundle, links to files outside, size fields beyond the file, broken headers,
/// index.json files no parser should trust, and blobs that are not what their names say.
/// What dkp-mirror must do with each is the tests' business (`HostileTarTests`), not this file's.
public enum TestdataHostileTars {
    /// File name -> bytes, in name order.
    public static func all() -> [(name: String, bytes: [UInt8])] {
        // One small layout (the release channel image), so each case stays a few KiB.
        let good = TestdataBundles.Content().entries(of: ["release-channel"], from: "release-channel", under: "")
        let layoutFile = Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8)
        let hex = String(repeating: "b", count: 64)
        func withTail(_ tail: [UInt8]) -> [UInt8] { RawTar.tar(good, tail: tail) }
        func index(_ body: String) -> [UInt8] { RawTar.tar([("oci-layout", layoutFile), ("index.json", Array(body.utf8))]) }
        let wholeGood = RawTar.tar(good)

        var cases: [(String, [UInt8])] = [
            ("dotdot-entry.tar", withTail(RawTar.header(name: "../x", size: 1) + [0x78] + RawTar.padding(1))),
            ("dotdot-inside-entry.tar", withTail(RawTar.header(name: "blobs/../../etc/x", size: 0))),
            ("absolute-entry.tar", withTail(RawTar.header(name: "/etc/passwd", size: 0))),
            ("symlink-escape-entry.tar", withTail(RawTar.header(name: "../evil", type: UInt8(ascii: "2"), link: "/etc/passwd"))),
            ("size-beyond-end.tar", withTail(RawTar.header(name: Array("blobs/sha256/\(hex)".utf8), sizeField: RawTar.octalSize(0o77777777777))
                + [UInt8](repeating: 0x41, count: 4096))),
            ("negative-base256-size.tar", withTail(RawTar.header(name: Array("blobs/sha256/\(hex)".utf8),
                                                                 sizeField: [UInt8](repeating: 0xFF, count: 11) + [0xF0]))),
            ("truncated-in-header.tar", Array(wholeGood.prefix(700))),
            ("truncated-in-data.tar", Array(wholeGood.prefix(wholeGood.count - 3 * 512 - 100))),
            ("garbage.tar", [UInt8](repeating: 0xFF, count: 4096)),
            ("deeply-nested-index.tar", index(#"{"schemaVersion":2,"manifests":"# + String(repeating: "[", count: 10_000)
                + String(repeating: "]", count: 10_000) + "}")),
            ("huge-size-in-index.tar", index(#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\#(hex)","size":99999999999999999999999}]}"#)),
        ]
        var badChecksum = wholeGood
        badChecksum[148] ^= 0x01
        cases.append(("bad-header-checksum.tar", badChecksum))
        var invalidUTF8 = Array(#"{"schemaVersion":2,"mediaType":""#.utf8) + [0xFF, 0xC0, 0xAF]
        invalidUTF8 += Array(#"","manifests":[]}"#.utf8)
        cases.append(("invalid-utf8-index.tar", RawTar.tar([("oci-layout", layoutFile), ("index.json", invalidUTF8)])))
        cases += linkCases(good: good, layoutFile: layoutFile)
        cases += damagedBlobCases(good: good)
        return cases.sorted { $0.0 < $1.0 }
    }

    /// A blob entry that is a symlink or a hard link to a file outside, where a layout's
    /// manifest should be.
    static func linkCases(good: [RawTar.Entry], layoutFile: [UInt8]) -> [(String, [UInt8])] {
        let wanted = Array("a manifest the link would stand in for\n".utf8)
        let digest = SHA256.digest(of: wanted)
        let index = Array(#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(digest)","size":\#(wanted.count),"annotations":{"io.deckhouse.image.short_tag":"x"}}]}"#.utf8)
        let name = Array("blobs/sha256/\(digest.hex)".utf8)
        return [
            ("symlink-blob.tar", RawTar.tar([("oci-layout", layoutFile), ("index.json", index)],
                                            tail: RawTar.header(name: name, type: UInt8(ascii: "2"), link: "/etc/passwd", sizeField: RawTar.octalSize(0)))),
            ("hardlink-blob.tar", RawTar.tar([("oci-layout", layoutFile), ("index.json", index)],
                                             tail: RawTar.header(name: name, type: UInt8(ascii: "1"), link: "../../../etc/passwd", sizeField: RawTar.octalSize(0)))),
        ]
    }

    /// The good tar with one blob's bytes changed, with a blob left out, and with a second
    /// `index.json` after the first.
    static func damagedBlobCases(good: [RawTar.Entry]) -> [(String, [UInt8])] {
        // The largest blob: a layer.
        guard let largest = good.indices.filter({ good[$0].name.hasPrefix("blobs/") })
            .max(by: { good[$0].data.count < good[$1].data.count }) else { return [] }
        var wrong = good
        wrong[largest].data[wrong[largest].data.count / 2] ^= 0x20
        var missing = good
        missing.remove(at: largest)
        let secondIndex = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.layout.v1+json","manifests":[]}"#
        return [
            ("wrong-blob-bytes.tar", RawTar.tar(wrong)),
            ("missing-blob.tar", RawTar.tar(missing)),
            ("duplicate-index.tar", RawTar.tar(good + [("index.json", Array(secondIndex.utf8))])),
        ]
    }

    /// Writes every case into `directory` (which it empties of `.tar` files first).
    public static func write(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for old in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where old.hasSuffix(".tar") {
            try FileManager.default.removeItem(atPath: directory + "/" + old)
        }
        for (name, bytes) in all() {
            try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + name))
        }
    }
}
