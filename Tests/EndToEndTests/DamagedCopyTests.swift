import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// A blob the bundle carries in several tars (the base layer shared by platform, installer,
/// module and package images) is pushed from a copy whose bytes match its digest (issue 11,
/// item 1): a damaged copy is named with the images that need it and the next copy is used;
/// only when every copy is damaged are those images held back, and the rest still goes up.
@Suite struct DamagedCopyTests {
    /// Byte offsets in `file` where the common base layer's bytes start (each tar entry of it).
    static func copiesOfCommonBase(in file: URL) async throws -> [Int] {
        var iterator = SyntheticBlob(size: EditionSeeder.Options().commonBaseSize, seed: EditionSeeder.Options.commonBaseSeed).makeAsyncIterator()
        guard let first = try await iterator.next() else { return [] }
        // Past the block counter the generator writes into each block's first 8 bytes.
        let signature = Data(first.getBytes(at: 8, length: 4096) ?? [])
        let bytes = try Data(contentsOf: file)
        var found: [Int] = []
        var start = bytes.startIndex
        while let range = bytes.range(of: signature, in: start..<bytes.endIndex) {
            found.append(range.lowerBound - 8)
            start = range.upperBound
        }
        return found
    }

    /// Flips one byte inside every copy of the common base in `tar`; returns how many.
    @discardableResult
    static func damageCommonBase(in tar: URL) async throws -> Int {
        let offsets = try await copiesOfCommonBase(in: tar)
        var bytes = try Data(contentsOf: tar)
        for offset in offsets { bytes[offset + 1000] ^= 0x5a }
        try bytes.write(to: tar)
        return offsets.count
    }

    static func tars(_ bundle: URL) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(atPath: bundle.path).filter { $0.hasSuffix(".tar") }.sorted()
            .map { bundle.appendingPathComponent($0) }
    }

    @Test func aDamagedCopyIsNamedAndAnIntactOneIsPushed() async throws {
        let (source, bundle) = try await PushTests.pulledBundle()
        // The layer sits in platform.tar, installer.tar and the module and package tars.
        var holders: [String] = []
        for tar in try Self.tars(bundle) where try await !Self.copiesOfCommonBase(in: tar).isEmpty {
            holders.append(tar.lastPathComponent)
        }
        #expect(holders.contains("platform.tar") && holders.contains("installer.tar") && holders.contains("module-console.tar"), "\(holders)")
        #expect(try await Self.damageCommonBase(in: bundle.appendingPathComponent("platform.tar")) == 1)

        let target = try await TestRegistry.start(tls: true, users: ["rw": "pw-copies"])
        let output = try await PushTests.push(bundle, to: target, password: "pw-copies")
        #expect(output.status == 0, "\(output.stderrString)")
        let warnings = output.stderrString.split(separator: "\n").filter { $0.hasPrefix("warning: platform.tar: blobs/sha256/") }
        #expect(warnings.count == 1, "\(output.stderrString)")
        #expect(warnings.first?.contains("is corrupt: its bytes hash to") == true)
        #expect(warnings.first?.contains("is needed by") == true && warnings.first?.contains("is tried next") == true, "\(warnings)")
        #expect(output.stderrString.contains("damaged blob copies in the bundle: 1"))
        #expect(try await TargetCheck.expectComplete(target, password: "pw-copies", bundle: bundle, modules: TargetCheck.editionModules) > 40)

        // verify names the same copy.
        let verified = try await CLITests.run(["verify", bundle.path])
        #expect(verified.status == 1)
        #expect(verified.stdoutString.contains("platform.tar") && verified.stdoutString.contains("is corrupt"), "\(verified.stdoutString)")
        withExtendedLifetime(source) {}
    }

    @Test func withEveryCopyDamagedOnlyTheImagesThatNeedItAreHeldBack() async throws {
        let (source, bundle) = try await PushTests.pulledBundle(["--no-modules"])
        var damaged = 0
        for tar in try Self.tars(bundle) { damaged += try await Self.damageCommonBase(in: tar) }
        #expect(damaged >= 3, "platform, installer, package")

        let target = try await TestRegistry.start(tls: true, users: ["rw": "pw-nocopy"])
        let output = try await PushTests.push(bundle, to: target, password: "pw-nocopy")
        #expect(output.status == 1, "\(output.stderrString)")
        let errors = output.stderrString.split(separator: "\n").filter { $0.hasPrefix("error: ") }
        #expect(!errors.isEmpty && errors.allSatisfy { $0.contains("has no intact copy in the bundle") }, "\(errors)")
        #expect(errors.contains { $0.contains("installer") }, "\(errors)")
        #expect(output.stderrString.contains("is tried next") && output.stderrString.contains("no other copy is left"))

        // What does not need the layer is there: the controller, its channels, the databases.
        var configuration = RegistryConfiguration()
        configuration.caFile = target.caFile
        configuration.credential = Credential(username: "rw", password: "pw-nocopy")
        let found = try await RegistryClient.with(host: target.host, configuration: configuration) { client -> [Bool] in
            var found: [Bool] = []
            for (repository, tag) in [("system/deckhouse", "v1.69.3"), ("system/deckhouse/release-channel", "stable"),
                                      ("system/deckhouse/security/trivy-db", "2"), ("system/deckhouse/installer", "latest")] {
                found.append(try await client.manifestDescriptor(repository: repository, reference: tag) != nil)
            }
            return found
        }
        #expect(found == [true, true, true, false], "only the installer (and the images with the layer) held back")
        withExtendedLifetime(source) {}
    }
}
