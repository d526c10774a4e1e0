import Foundation
import Testing
@testable import OCI

@Suite struct DigestTests {
    @Test(arguments: [Fixtures.hexA, Fixtures.hexMixed, String(repeating: "0", count: 64)])
    func parsesValid(hex: String) throws {
        let digest = try Digest(parsing: "sha256:\(hex)")
        #expect(digest.hex == hex)
        #expect(digest.algorithm == "sha256")
        #expect(digest.string == "sha256:\(hex)")
        #expect(digest.description == digest.string)
        #expect(try Digest(sha256Hex: hex) == digest)
    }

    static let invalid: [(input: String, fragment: String)] = [
        ("", "empty"),
        ("sha256:abc", "expected sha256:<64 lowercase hex digits>"),
        ("sha256:", "expected sha256:<64 lowercase hex digits>"),
        ("sha256:" + String(repeating: "a", count: 63), "expected sha256:<64 lowercase hex digits>"),
        ("sha256:" + String(repeating: "a", count: 65), "expected sha256:<64 lowercase hex digits>"),
        ("sha256:" + String(repeating: "A", count: 64), "lowercase"),
        ("sha256:" + String(repeating: "a", count: 63) + "F", "lowercase"),
        ("SHA256:" + Fixtures.hexA, "lowercase"),
        ("sha512:" + String(repeating: "a", count: 128), "only sha256 is supported"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "only sha256 is supported"),
        ("sha256:" + String(repeating: "a", count: 63) + "g", "'g' is not a hex digit"),
        ("sha256:" + String(repeating: "a", count: 63) + "\u{E1}", "is not a hex digit"),
        ("sha256:" + String(repeating: "a", count: 63) + "a\u{301}", "is not a hex digit"),
        ("sha256:" + Fixtures.hexA + " ", "whitespace"),
        (" sha256:" + Fixtures.hexA, "whitespace"),
        ("sha256:" + Fixtures.hexA + "\n", "whitespace"),
        ("sha256:" + String(repeating: "a", count: 32) + "\t" + String(repeating: "a", count: 31), "whitespace"),
        ("sha256:sha256:" + Fixtures.hexA, "'s' is not a hex digit"),
        (Fixtures.hexA, "missing the 'sha256:' prefix"),
        ("latest", "missing the algorithm prefix"),
        (":" + Fixtures.hexA, "missing the algorithm"),
    ]

    @Test(arguments: invalid)
    func rejectsInvalid(input: String, fragment: String) {
        let error = ociError { try Digest(parsing: input) }
        guard case let .invalidDigest(reported, reason)? = error else {
            Issue.record("expected invalidDigest for \(input.debugDescription), got \(String(describing: error))")
            return
        }
        #expect(reported == input)
        #expect(reason.contains(fragment), "\(reason)")
        let message = error?.description ?? ""
        #expect(message.hasPrefix("invalid digest '"))
        #expect(!message.contains("\n"))
    }

    @Test func exactMessageForShortDigest() {
        let error = ociError { try Digest(parsing: "sha256:abc") }
        #expect(error?.description == "invalid digest 'sha256:abc': expected sha256:<64 lowercase hex digits>")
    }

    @Test func sha512MessageSaysOnlySha256() {
        let error = ociError { try Digest(parsing: "sha512:" + String(repeating: "a", count: 128)) }
        #expect(error?.description.contains("unsupported algorithm 'sha512'; only sha256 is supported") == true)
    }

    @Test func longInputIsTruncatedInMessage() {
        let input = "sha256:" + String(repeating: "a", count: 5000)
        let error = ociError { try Digest(parsing: input) }
        let message = error?.description ?? ""
        #expect(message.count < 400)
        #expect(message.contains("…"))
        #expect(message.contains("5007 characters"))
    }

    @Test(arguments: ["", "abc", String(repeating: "A", count: 64), "sha256:" + Fixtures.hexA, Fixtures.hexA + "0"])
    func rejectsInvalidSha256Hex(hex: String) {
        let error = ociError { try Digest(sha256Hex: hex) }
        guard case let .invalidDigest(reported, _)? = error else {
            Issue.record("expected invalidDigest, got \(String(describing: error))")
            return
        }
        #expect(reported == hex)
    }

    @Test func comparableAndHashable() throws {
        let a = try Digest(sha256Hex: Fixtures.hexA)
        let b = try Digest(sha256Hex: Fixtures.hexB)
        let zero = try Digest(sha256Hex: String(repeating: "0", count: 64))
        #expect([b, a, zero].sorted() == [zero, a, b])
        #expect(a < b)
        #expect(Set([a, a, b]).count == 2)
    }

    struct Holder: Codable, Equatable {
        var digest: Digest
    }

    @Test func codableAsSingleString() throws {
        let digest = try Digest(sha256Hex: Fixtures.hexMixed)
        let encoded = try JSONEncoder().encode(digest)
        #expect(String(decoding: encoded, as: UTF8.self) == "\"sha256:\(Fixtures.hexMixed)\"")
        #expect(try JSONDecoder().decode(Digest.self, from: encoded) == digest)

        let holder = Holder(digest: digest)
        let roundTripped = try JSONDecoder().decode(Holder.self, from: JSONEncoder().encode(holder))
        #expect(roundTripped == holder)
    }

    @Test(arguments: [
        #"{"digest":"sha256:abc"}"#,
        #"{"digest":"sha512:\#(String(repeating: "a", count: 128))"}"#,
        #"{"digest":"SHA256:\#(Fixtures.hexA)"}"#,
        #"{"digest":""}"#,
    ])
    func decodingRejectsBadDigest(json: String) {
        do {
            _ = try JSONDecoder().decode(Holder.self, from: Data(json.utf8))
            Issue.record("decoded \(json)")
        } catch let DecodingError.dataCorrupted(context) {
            #expect(context.debugDescription.hasPrefix("invalid digest '"))
            #expect(context.codingPath.map(\.stringValue) == ["digest"])
            #expect(context.underlyingError is OCIError)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func decodingRejectsNonString() {
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Holder.self, from: Data(#"{"digest":42}"#.utf8))
        }
    }
}
