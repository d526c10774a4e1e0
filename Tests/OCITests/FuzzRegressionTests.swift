import Foundation
import Testing
@testable import OCI

/// Hostile inputs for the OCI parsers (the cases `scripts/fuzz.sh` exercises at random):
/// each must end in a clear `OCIError`, never a trap, a hang or a stack overflow.
@Suite struct OCIFuzzRegressionTests {
    static let hex = String(repeating: "a", count: 64)

    func expectInvalidManifest(_ bytes: [UInt8], _ contentType: MediaType? = nil, mentions: String? = nil,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let document = try ManifestDocument.parse(bytes, contentType: contentType)
            Issue.record("parsed as \(document.mediaType)", sourceLocation: sourceLocation)
        } catch let error as OCIError {
            let message = error.description
            #expect(!message.isEmpty, sourceLocation: sourceLocation)
            #expect(message.count < 2_000, "the message stays short: \(message.prefix(200))...", sourceLocation: sourceLocation)
            if let mentions {
                #expect(message.contains(mentions), "\(message)", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("not an OCIError: \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: [1_000, 100_000])
    func deeplyNestedJSONIsRefused(_ depth: Int) {
        let arrays = #"{"schemaVersion":2,"config":"# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
        expectInvalidManifest(Array(arrays.utf8))
        let objects = #"{"schemaVersion":2,"manifests":[{"annotations":"# + String(repeating: #"{"a":"#, count: depth)
            + "1" + String(repeating: "}", count: depth) + "}]}"
        expectInvalidManifest(Array(objects.utf8))
        // Unterminated: the parser must not recurse to the end of the input either.
        expectInvalidManifest(Array(String(repeating: "[", count: depth).utf8))
    }

    @Test(arguments: ["1e400", "-1e400", "99999999999999999999999999", "2.5", "-0", "NaN", "Infinity", "0x2"])
    func hugeAndOddSchemaVersionsAreRefused(_ number: String) {
        let body = #"{"schemaVersion":\#(number),"config":{"mediaType":"a/b","digest":"sha256:\#(Self.hex)","size":1},"layers":[]}"#
        expectInvalidManifest(Array(body.utf8))
    }

    @Test(arguments: ["99999999999999999999999999", "1e30", "-1", "1.5", "\"12\""])
    func hugeAndNegativeSizesAreRefused(_ size: String) {
        let body = #"{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:\#(Self.hex)","size":\#(size)},"layers":[]}"#
        expectInvalidManifest(Array(body.utf8))
    }

    @Test func invalidUTF8IsRefused() {
        var body = Array(#"{"schemaVersion":2,"mediaType":""#.utf8)
        body += [0xC3, 0x28, 0xFF, 0xFE, 0xED, 0xA0, 0x80]  // bad continuation, invalid bytes, a UTF-16 surrogate
        body += Array(#"","config":{"mediaType":"a/b","digest":"sha256:\#(Self.hex)","size":1},"layers":[]}"#.utf8)
        expectInvalidManifest(body)
        expectInvalidManifest([0xFF, 0xFE, 0x7B, 0x00, 0x7D, 0x00])  // UTF-16 with a BOM
        expectInvalidManifest([0x00, 0x00, 0x00])
    }

    @Test func bodiesThatAreNotManifests() {
        expectInvalidManifest([], mentions: "empty")
        expectInvalidManifest(Array("  \n\t".utf8), mentions: "empty")
        expectInvalidManifest(Array("null".utf8))
        expectInvalidManifest(Array("[]".utf8))
        expectInvalidManifest(Array(#""schemaVersion""#.utf8))
        expectInvalidManifest(Array(#"{"schemaVersion":2}"#.utf8), mentions: "neither")
        expectInvalidManifest(Array(#"{"schemaVersion":2,"manifests":null,"config":null}"#.utf8))
        expectInvalidManifest(Array(#"{"schemaVersion":2,"manifests":[{}]}"#.utf8))
        expectInvalidManifest(Array(#"{"schemaVersion":2,"manifests":[{"digest":"sha256:\#(Self.hex)"}]}"#.utf8))
        expectInvalidManifest(Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{}}"#.utf8),
                              mentions: "manifests")
    }

    @Test func overlongMediaTypeIsShortenedInTheMessage() {
        let long = String(repeating: "x", count: 1 << 20)
        let body = #"{"schemaVersion":2,"mediaType":"\#(long)"}"#
        expectInvalidManifest(Array(body.utf8), mentions: "neither")
    }

    @Test func justOverTheSizeLimitIsRefusedBeforeParsing() {
        var body = Array(#"{"schemaVersion":2,"annotations":{"a":""#.utf8)
        body += [UInt8](repeating: UInt8(ascii: "a"), count: ManifestDocument.maxSize)
        body += Array(#""},"config":{"mediaType":"a/b","digest":"sha256:\#(Self.hex)","size":1},"layers":[]}"#.utf8)
        do {
            _ = try ManifestDocument.parse(body, contentType: nil)
            Issue.record("a body over 4 MiB was parsed")
        } catch let error as OCIError {
            #expect(error == .manifestTooLarge(size: body.count, limit: 4 << 20))
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test(arguments: [
        "", "@", ":", "/", "//", "a/b@", "h.io/@sha256:\(hex)", "h.io/r@sha256:", "h.io/r:@sha256:\(hex)",
        "h.io/r@sha256:\(hex)@sha256:\(hex)", "[::1/r", "[::1]:/r", "h.io:99999999999999999999/r", "h.io:-1/r",
        "h.io/r:" + String(repeating: "t", count: 129), "h.io/" + String(repeating: "a/", count: 200) + "b",
        "h.io/r\u{0}x", "h.io/r\u{202E}x", "h.io/R", "h.io/r/", "h.io/r//s", "h.io/r:tag:tag",
        String(repeating: "a", count: 1 << 20), "h.io/" + String(repeating: "ä", count: 300),
    ])
    func hostileReferencesAreRefused(_ text: String) {
        do {
            let reference = try Reference(parsing: text)
            Issue.record("parsed '\(text.prefix(80))' as \(reference)")
        } catch let error as OCIError {
            guard case .invalidReference = error else { Issue.record("\(error)"); return }
            #expect(error.description.count < 1_000, "\(error.description.prefix(200))")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func invalidUTF8ReferenceIsRefused() {
        let text = String(decoding: Array("h.io/r:".utf8) + [0xFF, 0xC0, 0x80], as: UTF8.self)
        #expect(throws: OCIError.self) { try Reference(parsing: text) }
        #expect(throws: OCIError.self) { try Digest(parsing: "sha256:" + String(repeating: "\u{FFFD}", count: 64)) }
        #expect(throws: OCIError.self) { try Digest(parsing: "sha256:" + String(repeating: "a", count: 1 << 20)) }
    }

    @Test func referencesPrintAndParseBack() throws {
        for text in ["h.io/r", "127.0.0.1:5000/a/b:v1", "[::1]:5000/x@sha256:\(Self.hex)", "localhost/a:t@sha256:\(Self.hex)"] {
            let reference = try Reference(parsing: text)
            #expect(try Reference(parsing: reference.description) == reference)
        }
    }
}
