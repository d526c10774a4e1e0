import DKP
import Testing

/// `extra_images.json` read as d8 reads it (internal/mirror/modules: a string is the tag, a
/// number is printed with `%.0f`, anything else is skipped).
@Suite struct ExtraImagesTests {
    private func tags(_ json: String) throws -> (tags: [String], notes: [String]) {
        let read = try ExtraImages.tags(Array(json.utf8), of: "modules/console:v1.2.0")
        return (read.tags.map { "\($0.name):\($0.tag)" }, read.notes)
    }

    @Test func numbersArePrintedAsGoPrintsThem() throws {
        let read = try tags(#"{"a": "v0.3.1", "b": 2, "c": 2.5, "d": 3.5, "e": 7.49, "f": 12.0}"#)
        #expect(read.tags == ["a:v0.3.1", "b:2", "c:2", "d:4", "e:7", "f:12"])
        #expect(read.notes.isEmpty)
    }

    @Test func aValueOfAnotherKindIsSkippedWithANote() throws {
        let read = try tags(#"{"flag": true, "list": ["x"], "ok": "1"}"#)
        #expect(read.tags == ["ok:1"])
        #expect(read.notes.count == 2 && read.notes.allSatisfy { $0.contains("modules/console:v1.2.0") && $0.contains("skipped") }, "\(read.notes)")
    }

    @Test func aFileThatIsNoObjectIsADamagedSource() throws {
        #expect(throws: DKPError.self) { try tags(#"["scanner", "v1"]"#) }
        #expect(try ExtraImages.tags(nil, of: "x").tags.isEmpty)
    }
}
