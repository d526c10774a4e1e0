@testable import DKP
import Testing
import Version

/// The constraint dialect of d8's `--include-module` (deckhouse-cli internal/mirror/README.MD,
/// "Module Filtering") and the plain semver one of plugin contracts.
@Suite struct VersionConstraintTests {
    private func v(_ text: String) -> Version { Version(tolerant: text)! }

    @Test func aBareVersionIsThatVersionOrNewerInItsMajor() throws {
        let c = try VersionConstraint(parsing: "1.3.0")
        #expect(c.matches(v("1.3.0")) && c.matches(v("1.3.3")) && c.matches(v("1.9.0")))
        #expect(!c.matches(v("1.2.9")) && !c.matches(v("2.0.0")))
        #expect(!c.isExactOnly && c.pins.isEmpty && c.anchors.isEmpty && c.pinnedTag == nil)
        // For 0.x too the whole major, not one minor as ^ would.
        let zero = try VersionConstraint(parsing: "0.4.0")
        #expect(zero.matches(v("0.5.1")) && !zero.matches(v("1.0.0")) && !zero.matches(v("0.3.9")))
        #expect(try !VersionConstraint(parsing: "^0.4.0").matches(v("0.5.1")))
        // In a plugin contract a bare version is that version.
        let contract = try VersionConstraint(parsing: "1.3.0", dialect: .semver)
        #expect(contract.matches(v("1.3.0")) && !contract.matches(v("1.3.3")))
    }

    @Test func anEqualsSignPinsATag() throws {
        let pin = try VersionConstraint(parsing: "=v1.3.0")
        #expect(pin.isExactOnly && pin.pinnedTag == "v1.3.0")
        #expect(pin.channelAliases.map(\.channels) == [ReleaseChannel.allCases])
        #expect(try VersionConstraint(parsing: "=1.3").pinnedTag == "v1.3.0", "a version is the registry's vX.Y.Z tag")
        let custom = try VersionConstraint(parsing: "=bobV1")
        #expect(custom.pinnedTag == "bobV1" && custom.pins.first?.version == nil)
        #expect(try VersionConstraint(parsing: "=v1.2.0-rc.1").pinnedTag == "v1.2.0-rc.1", "a pre-release keeps its own tag")
        let onStable = try VersionConstraint(parsing: "=v1.3.0+stable")
        #expect(onStable.pinnedTag == "v1.3.0" && onStable.channelAliases.map(\.channels) == [[.stable]])
        #expect(try VersionConstraint(parsing: "=1234").pinnedTag == "1234", "a number without a dot is a custom tag, as written")
        #expect(onStable.matches(v("1.3.0")) && !onStable.matches(v("1.3.1")))
        #expect(try VersionConstraint(parsing: "=v1.3.0").lowerBound == nil, "a pin is pulled by its tag, not probed")
    }

    @Test func aRepeatedNameTakesEither() throws {
        let two = try VersionConstraint(parsing: "=v1.0.2").or(VersionConstraint(parsing: "=v1.1.4"))
        #expect(two.isExactOnly && two.pins.map(\.tag) == ["v1.0.2", "v1.1.4"] && two.pinnedTag == nil)
        #expect(two.channelAliases.allSatisfy { $0.channels.isEmpty }, "several pins without a channel would overwrite each other")
        let named = try VersionConstraint(parsing: "=v1.0.2+beta").or(VersionConstraint(parsing: "=v1.1.4+stable"))
        #expect(named.channelAliases.map(\.channels) == [[.beta], [.stable]])
        let mixed = try VersionConstraint(parsing: "=v1.0.2").or(VersionConstraint(parsing: "~1.3"))
        #expect(!mixed.isExactOnly && mixed.channelAliases.isEmpty)
        #expect(mixed.matches(v("1.0.2")) && mixed.matches(v("1.3.4")) && !mixed.matches(v("1.1.0")))
        #expect(mixed.lowerBound == v("1.3.0"), "probing starts at the range, not at the pin")
        // Each range given stays itself, for plugins (d8 takes the newest version of each).
        let ranges = try VersionConstraint(parsing: "<1.1.0").or(VersionConstraint(parsing: "=v1.4.0")).or(VersionConstraint(parsing: "~1.1 || ^2")).ranges
        #expect(ranges.map(\.description) == ["<1.1.0", "~1.1 || ^2"] && ranges.allSatisfy(\.pins.isEmpty))
        #expect(ranges[0].matches(v("1.0.9")) && !ranges[0].matches(v("1.1.5")) && ranges[1].matches(v("1.1.5")) && ranges[1].matches(v("2.3.0")))
    }

    @Test func rangesKeepTheVersionsAnInclusiveBoundNames() throws {
        #expect(try VersionConstraint(parsing: ">=1.1.0 <1.3.0").anchors == [v("1.1.0")])
        #expect(try VersionConstraint(parsing: ">=1.1.0, <=1.2.4").anchors == [v("1.1.0"), v("1.2.4")])
        #expect(try VersionConstraint(parsing: "^1.2").anchors.isEmpty)
        #expect(try VersionConstraint(parsing: "~1.2.0").anchors.isEmpty)
        // Inside a compound a bare version is that version (d8 hands compounds to plain semver).
        let compound = try VersionConstraint(parsing: "<1.0 || 1.5.0")
        #expect(compound.matches(v("1.5.0")) && !compound.matches(v("1.6.0")))
        let either = try VersionConstraint(parsing: "<1.0 || >= 2.1")
        #expect(either.matches(v("0.9.0")) && either.matches(v("2.1.0")) && !either.matches(v("1.5.0")))
    }

    /// Ranges as Masterminds/semver v3 reads them, to which d8 hands every range: a part left
    /// out or written as x is open.
    @Test func rangesReadPartialVersionsAsD8sSemverLibraryDoes() throws {
        let all = ["0.0.3", "0.0.4", "0.2.5", "0.3.0", "1.0.0", "1.2.0", "1.2.9", "1.3.0", "1.9.1", "2.0.0"]
        func matching(_ text: String, dialect: VersionConstraint.Dialect = .flag) throws -> [String] {
            let constraint = try VersionConstraint(parsing: text, dialect: dialect)
            return all.filter { constraint.matches(v($0)) }
        }
        #expect(try matching("~1") == ["1.0.0", "1.2.0", "1.2.9", "1.3.0", "1.9.1"])
        #expect(try matching("~1.2") == ["1.2.0", "1.2.9"])
        #expect(try matching("~>1.2.3") == ["1.2.9"])
        #expect(try matching("^0") == ["0.0.3", "0.0.4", "0.2.5", "0.3.0"])
        #expect(try matching("^0.2") == ["0.2.5"])
        #expect(try matching("^0.0.3") == ["0.0.3"])
        #expect(try matching(">1.2") == ["1.3.0", "1.9.1", "2.0.0"])
        #expect(try matching(">1") == ["2.0.0"])
        #expect(try matching("<=1.2") == ["0.0.3", "0.0.4", "0.2.5", "0.3.0", "1.0.0", "1.2.0", "1.2.9"])
        #expect(try matching("=>1.3 =<1.9") == ["1.3.0", "1.9.1"])
        #expect(try matching(">=1 !=1.2") == ["1.0.0", "1.3.0", "1.9.1", "2.0.0"])
        #expect(try matching(">=1.0 1.2.x") == ["1.2.0", "1.2.9"], "inside a range a partial version is every version it names")
        #expect(try matching("1.2", dialect: .semver) == ["1.2.0", "1.2.9"])
        #expect(try !VersionConstraint(parsing: "=>1.3").isExactOnly, "=> is an operator, not a pin of the tag '>1.3'")
        #expect(try VersionConstraint(parsing: "<=1.2").anchors == [v("1.2.0")])
        #expect(try VersionConstraint(parsing: ">=1.0 1.2.x").anchors == [v("1.0.0")])
        // A pre-release only where the range names one.
        #expect(try !VersionConstraint(parsing: ">=1.2").matches(v("1.3.0-rc.1")))
        #expect(try VersionConstraint(parsing: ">=1.3.0-rc.0").matches(v("1.3.0-rc.1")))
    }

    /// d8 keeps the latest patch per minor of each range given on its own, with its anchors.
    @Test func eachRangeGivenKeepsItsOwnLatestPatches() throws {
        let tags = ["1.2.0", "1.2.1", "1.2.2", "1.2.3", "1.2.7", "1.3.4"].map(v)
        let twice = try VersionConstraint(parsing: ">=1.2.0 <1.2.3").or(VersionConstraint(parsing: ">=1.2.3"))
        #expect(EditionDiscovery.latestPatches(tags, within: twice) == Set(["1.2.0", "1.2.2", "1.2.3", "1.2.7", "1.3.4"].map(v)))
        let once = try VersionConstraint(parsing: ">=1.2.0 <1.2.3 || >=1.2.3")
        #expect(EditionDiscovery.latestPatches(tags, within: once) == Set(["1.2.0", "1.2.3", "1.2.7", "1.3.4"].map(v)), "one string is one range")
    }

    /// A module's release candidates are candidates as d8 reads them: a tag semver reads, pulled
    /// as `v` + its canonical form, so a tag not already in that form is none.
    @Test func releaseCandidatesAreTagsOnlyInCanonicalForm() throws {
        #expect(Version(releaseTag: "v1.3.0-rc.1")?.releaseTag == "v1.3.0-rc.1")
        #expect(Version(releaseTag: "v1.3.0")?.releaseTag == "v1.3.0")
        for tag in ["1.3.0", "v1.3", "v1.3.0+build", "bobV1", "stable", "v01.3.0", "v1.3.0-rc.1.att", "v1.3.0-rc.1.sig", "v1.2.0.att"] { #expect(Version(releaseTag: tag) == nil, "\(tag)") }
        let tags = ["v1.2.9", "v1.3.0-rc.0", "v1.3.0-rc.1", "v1.4.0-rc.1", "v1.4.0"].compactMap(Version.init(releaseTag:))
        // A minor's release outranks its candidates; a minor with only candidates keeps the newest;
        // the named anchor stays.
        let named = try VersionConstraint(parsing: ">=1.3.0-rc.0")
        #expect(EditionDiscovery.latestPatches(tags.filter { named.matches($0) }, within: named).map(\.releaseTag).sorted()
                == ["v1.3.0-rc.0", "v1.3.0-rc.1", "v1.4.0"])
        #expect(EditionDiscovery.latestPatches(tags, within: try VersionConstraint(parsing: ">=1.2")).map(\.releaseTag).sorted() == ["v1.2.9", "v1.4.0"])
    }

    @Test func badConstraintsSayWhatIsWrong() {
        func message(_ text: String) -> String {
            do { _ = try VersionConstraint(parsing: text); return "" } catch { return "\(error)" }
        }
        #expect(message("=v1.3.0+nightly").contains("'+nightly' is not a release channel"))
        #expect(message(">=1.2+stable").contains("a +channel suffix needs an exact version"))
        #expect(message("=").contains("'=' needs a tag after it"))
        #expect(message("=a/b").contains("contains '/'"))
        #expect(message(">>1").contains("is not a version"))
        #expect(message(">=").contains("expected e.g."))
        #expect(message("1.x").contains("for a wildcard write ~1.x or >=1.x"))
        #expect(message("~1.2.3.4").contains("'1.2.3.4' is not a version"))
    }
}
