@testable import Bundle
import Foundation
import OCI
import Streams
import Testing
import TestSupport

/// Layouts several tars share, `--file` selections, and the short tag rule.
@Suite struct BundleIndexUnionTests {
    typealias F = BundleIndexFixtures

    /// package-<p>.tar and package-versions.tar both hold packages/p/version, each with part of
    /// its index.json and only its own blobs.
    @Test func descriptorsUnitedBlobsFromWhicheverTarHasThem() throws {
        let dir = try TarTestTools.scratch("union")
        defer { TarTestTools.cleanup(dir) }
        let repo = "\(F.edition)/packages/p/version"
        let stable = F.image(1), v1 = F.image(2), lts = F.image(3)
        try F.writeTar(dir, "package-p.tar", F.layout("packages/p/version", [F.tag(repo, "stable", stable), F.tag(repo, "v1.0.0", v1)]))
        try F.writeTar(dir, "package-versions.tar", F.layout("packages/p/version", [F.tag(repo, "stable", stable), F.tag(repo, "lts", lts)]))
        let index = try BundleIndex.open(directory: dir)
        #expect(index.layouts.map(\.path) == ["packages/p/version"])
        let layout = try #require(index.layout(at: "packages/p/version"))
        #expect(layout.tars == ["package-p.tar", "package-versions.tar"])
        #expect(Set(layout.descriptors.map(\.digest)) == [stable.digest, v1.digest, lts.digest])
        #expect(layout.descriptors.count == 3)
        let tags = layout.resolvedTags()
        #expect(tags.tags.map(\.tag) == ["stable", "v1.0.0", "lts"])
        #expect(tags.warnings.isEmpty, "the same digest under one tag twice is no conflict")
        #expect(index.blob(lts.digest, in: layout)?.tar == "package-versions.tar")
        #expect(index.blob(v1.digest, in: layout)?.tar == "package-p.tar")
        for image in [stable, v1, lts] {
            for blob in image.all {
                let location = try #require(index.blob(blob.digest, in: layout))
                #expect(try index.readSmall(location) == blob.bytes)
            }
        }
        #expect(index.blobCopies(stable.digest, in: layout).count == 2)
    }

    @Test func shortTagRule() throws {
        let dir = try TarTestTools.scratch("tags")
        defer { TarTestTools.cleanup(dir) }
        let a = F.image(1), b = F.image(2), c = F.image(3), d = F.image(4), e = F.image(5)
        func ref(_ name: String?, _ short: String?, _ image: F.Image) -> String {
            var notes: [String] = []
            if let short { notes.append(#""io.deckhouse.image.short_tag":"\#(short)""#) }
            if let name { notes.append(#""org.opencontainers.image.ref.name":"\#(name)""#) }
            return #"{"mediaType":"\#(MediaType.ociManifest.rawValue)","digest":"\#(image.digest)","size":\#(image.manifest.count),"annotations":{\#(notes.joined(separator: ","))}}"#
        }
        func layout(_ refs: [String], _ images: [F.Image]) -> [(name: String, data: [UInt8])] {
            var entries = images.flatMap { $0.all }.map { ("x/blobs/sha256/\($0.digest.hex)", $0.bytes) }
            entries.append(("x/oci-layout", F.ociLayout))
            entries.append(("x/index.json", Array(#"{"schemaVersion":2,"manifests":[\#(refs.joined(separator: ","))]}"#.utf8)))
            return entries
        }
        try F.writeTar(dir, "a.tar", layout([
            ref("reg.example/x:1.0", nil, a),            // tag from the ref name
            ref("latest", nil, b),                        // a bare tag
            ref("reg.example/x@\(c.digest)", nil, c),     // no tag anywhere: by digest alone
            ref("reg.example/x:same", "same", d),         // given again, another digest, by b.tar
            ref("reg.example/x:bad", "-bad tag", e),      // not a tag: invalid
        ], [a, b, c, d, e]))
        try F.writeTar(dir, "b.tar", layout([ref("reg.example/x:same", "same", e)], [e]))
        let index = try BundleIndex.open(directory: dir)
        let tags = try #require(index.layout(at: "x")).resolvedTags()
        #expect(tags.tags.map(\.tag) == ["1.0", "latest", c.digest.string, "same"])
        #expect(tags.descriptor(tagged: "same")?.digest == e.digest, "the last wins")
        #expect(tags.tags.last?.tar == "b.tar")
        #expect(tags.warnings.count == 4, "\(tags.warnings)")
        #expect(tags.warnings[0] == "a.tar: x: descriptor \(a.digest) (ref name 'reg.example/x:1.0') has no io.deckhouse.image.short_tag; pushed as tag '1.0', from its ref name")
        #expect(tags.warnings[1].contains("(ref name 'latest') has no io.deckhouse.image.short_tag; pushed as tag 'latest'"))
        #expect(tags.warnings[2].hasSuffix("its ref name carries no tag; pushed by digest alone"))
        #expect(tags.warnings[3] == "x: tag 'same' is given to two different images: \(d.digest) (a.tar, ref name 'reg.example/x:same') and \(e.digest) (b.tar, ref name 'reg.example/x:same'); the last, \(e.digest) from b.tar, is pushed")
        #expect(tags.invalid.count == 1, "\(tags.invalid)")
        #expect(tags.invalid.first?.contains("its short tag is not a valid tag: tag '-bad tag' is invalid") == true, "\(tags.invalid)")
        #expect(BundleIndex.Layout.tag(ofRefName: "reg.example:5000/x/y:v1") == "v1")
        #expect(BundleIndex.Layout.tag(ofRefName: "reg.example:5000/x/y") == nil)
        #expect(BundleIndex.Layout.tag(ofRefName: "x") == "x")
    }

    @Test func fileSelection() throws {
        let dir = try TarTestTools.scratch("files")
        let other = try TarTestTools.scratch("files-other")
        defer { TarTestTools.cleanup(dir); TarTestTools.cleanup(other) }
        try F.writeTar(dir, "platform.tar", F.platform(), chunkSize: 2000)
        try F.writeTar(dir, "module-x.tar", F.module("x", root: "modules/x"))
        try F.writeTar(dir, "security.tar", F.security(root: "security"))
        try F.writeTar(other, "module-console.tar", F.module("console", root: "modules/console"))
        // A chunk stands for its chunk set; NAME.tar for a tar that only exists as chunks.
        for file in ["platform.tar.0001.chunk", "platform.tar"] {
            let index = try BundleIndex.open(directory: nil, files: [dir + "/" + file])
            #expect(index.tars.map(\.name) == ["platform.tar"])
            #expect(index.tars[0].files.count > 1)
            #expect(index.layouts.map(\.path) == ["", "install", "release-channel"])
        }
        // Mixed with a directory; the same tar twice counts once.
        let mixed = try BundleIndex.open(directory: other, files: [dir + "/module-x.tar", dir + "/module-x.tar", dir + "/platform.tar.0000.chunk"])
        #expect(mixed.tars.map(\.name) == ["module-console.tar", "module-x.tar", "platform.tar"])
        #expect(throws: BundleSelectionError.notATar(path: dir + "/notes.txt")) {
            _ = try BundleIndex.open(directory: nil, files: [dir + "/notes.txt"])
        }
        #expect(throws: BundleError.io(path: dir + "/installer.tar", operation: "open", errno: ENOENT)) {
            _ = try BundleIndex.open(directory: nil, files: [dir + "/installer.tar"])
        }
        try F.writeTar(other, "module-x.tar", F.module("x", root: "modules/x"))
        #expect(throws: BundleSelectionError.self) {
            _ = try BundleIndex.open(directory: other, files: [dir + "/module-x.tar"])
        }
    }
}
