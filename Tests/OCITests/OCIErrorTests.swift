import Testing
@testable import OCI

@Suite struct OCIErrorTests {
    @Test func messages() {
        #expect(OCIError.invalidDigest("x", reason: "bad").description == "invalid digest 'x': bad")
        #expect(OCIError.invalidReference("r", reason: "bad").description == "invalid reference 'r': bad")
        #expect(OCIError.invalidManifest(reason: "bad").description == "invalid manifest: bad")
        #expect(OCIError.manifestTooLarge(size: 5, limit: 4).description
            == "manifest is too large: 5 bytes, the limit is 4 bytes")
    }

    @Test func messagesStayOnOneLine() {
        let errors: [OCIError] = [
            .invalidDigest("a\nb\r\nc\td\u{0}e\u{2028}", reason: "x\ny"),
            .invalidReference("line1\nline2", reason: "r\ns"),
            .invalidManifest(reason: "first\nsecond"),
        ]
        for error in errors {
            #expect(!error.description.contains("\n"), "\(error.description)")
            #expect(!error.description.contains("\r"))
            #expect(!error.description.contains("\u{0}"))
            #expect(!error.description.contains("\u{2028}"))
        }
        #expect(OCIError.invalidReference("a\nb", reason: "r").description == "invalid reference 'a\\nb': r")
    }

    @Test(arguments: [0, 1, 199, 200])
    func shortInputsAreNotTruncated(length: Int) {
        let input = String(repeating: "x", count: length)
        #expect(OCIError.invalidDigest(input, reason: "r").description == "invalid digest '\(input)': r")
    }

    @Test(arguments: [201, 1000, 100_000])
    func longInputsAreTruncated(length: Int) {
        let input = String(repeating: "x", count: length)
        let message = OCIError.invalidReference(input, reason: "r").description
        #expect(message.contains(String(repeating: "x", count: 200) + "… (\(length) characters)"))
        #expect(!message.contains(String(repeating: "x", count: 201)))
    }

    @Test func equatable() {
        #expect(OCIError.unsupportedSchema1 == .unsupportedSchema1)
        #expect(OCIError.invalidDigest("a", reason: "b") != .invalidDigest("a", reason: "c"))
        #expect(OCIError.manifestTooLarge(size: 1, limit: 2) != .manifestTooLarge(size: 1, limit: 3))
    }
}
