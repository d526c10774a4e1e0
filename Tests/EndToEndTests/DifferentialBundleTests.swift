import Foundation
import Mirror
import OCI
import Registry
import Testing
import TestSupport

/// Differential bundles (issue 13): a site on v1.69.3, its inventory, `pull --against` of
/// v1.70.1, verify, push; against real registries (the source plain HTTP, the site TLS + htpasswd).
@Suite struct DifferentialBundleTests {
    static let password = "diff-pw-13"

    /// The site and the bundles of one scenario.
    struct Site {
        var source: TestRegistry
        var target: TestRegistry
        var old: URL        // v1.69.3, full: what the site was built from
        var full: URL       // v1.70.1, full
        var differential: URL  // v1.70.1 --against the site's inventory
        var inventory: String
        var pullOutput: TestProcess.Output
    }

    /// Layers large enough that the 2 MB bound means something: the shared controller base
    /// (and the common base, modules, security databases, installer) is what the site holds.
    static func site() async throws -> Site {
        let (source, _) = try await PullTests.seededEdition {
            $0.baseLayerSize = 6 << 20
            $0.imageLayerSize = 512 << 10
            $0.commonBaseSize = 1 << 20
        }
        let old = try TestRegistry.temporaryDirectory("dkp-diff-old")
        let pulledOld = try await PullTests.pull(source, into: old, ["--deckhouse-tag", "v1.69.3"])
        #expect(pulledOld.status == 0, "\(pulledOld.stderrString)")
        let target = try await TestRegistry.start(tls: true, users: ["rw": password])
        let pushed = try await PushTests.push(old, to: target, password: password)
        #expect(pushed.status == 0, "\(pushed.stderrString)")
        let inventory = try TestRegistry.temporaryDirectory("dkp-diff-inv").appendingPathComponent("site.inventory").path
        let taken = try await CLITests.run(["inventory", "--registry", "\(target.host)/system/deckhouse", "--ca-file", target.caFile!,
                                            "-u", "rw", "--registry-password-stdin", "-o", inventory, "--progress", "none"], stdin: password)
        #expect(taken.status == 0, "\(taken.stderrString)")
        let full = try TestRegistry.temporaryDirectory("dkp-diff-full")
        let pulledFull = try await PullTests.pull(source, into: full, ["--deckhouse-tag", "v1.70.1"])
        #expect(pulledFull.status == 0, "\(pulledFull.stderrString)")
        let differential = try TestRegistry.temporaryDirectory("dkp-diff-bundle")
        let pulled = try await PullTests.pull(source, into: differential, ["--deckhouse-tag", "v1.70.1", "--against", inventory])
        #expect(pulled.status == 0, "\(pulled.stderrString)")
        return Site(source: source, target: target, old: old, full: full, differential: differential, inventory: inventory, pullOutput: pulled)
    }

    /// Bytes of every finished tar of a bundle.
    static func tarBytes(_ bundle: URL) throws -> Int64 {
        try FileManager.default.contentsOfDirectory(atPath: bundle.path).filter { $0.hasSuffix(".tar") }.reduce(0) {
            $0 + ((try FileManager.default.attributesOfItem(atPath: bundle.appendingPathComponent($1).path)[.size] as? Int64) ?? 0)
        }
    }

    static func client(_ target: TestRegistry) throws -> RegistryClient {
        var configuration = RegistryConfiguration()
        configuration.caFile = target.caFile
        configuration.credential = Credential(username: "rw", password: password)
        return try RegistryClient(host: target.host, configuration: configuration)
    }

    /// repository -> its tags, over the whole registry.
    static func tagSnapshot(_ target: TestRegistry) async throws -> [String: [String]] {
        let client = try client(target)
        var snapshot: [String: [String]] = [:]
        for repository in try await client.catalog() ?? [] {
            snapshot[repository] = try await client.tags(repository: repository).sorted()
        }
        await client.shutdown()
        return snapshot
    }

    @Test func differentialBundleCarriesWhatTheSiteLacksVerifiesAndCompletesTheSite() async throws {
        let site = try await Self.site()
        // What the site lacks, worked out from the bundles' own entries (not from the inventory):
        // every entry of the full v1.70.1 bundle whose digest the v1.69.3 bundle did not carry.
        let full = try await InventoryTests.extractedBlobs(site.full)
        let old = try await InventoryTests.extractedBlobs(site.old)
        let differential = try await InventoryTests.extractedBlobs(site.differential)
        let lacking = full.filter { old[$0.key] == nil }
        let lackingBytes = lacking.values.reduce(Int64(0)) { $0 + $1.size * Int64($1.layouts.count) }
        #expect(lackingBytes > 2 << 20, "the update is big enough for the bound to mean something: \(lackingBytes)")
        // The seeder shares layers between the versions (the controller base among them) and not others.
        #expect(lacking.count < full.count && lacking.count > 10, "\(lacking.count) of \(full.count)")

        let bundleBytes = try Self.tarBytes(site.differential)
        let fullBytes = try Self.tarBytes(site.full)
        print("differential bundle: \(bundleBytes) tar bytes; blobs the site lacks: \(lackingBytes) bytes; full bundle: \(fullBytes) bytes")
        #expect(bundleBytes >= lackingBytes && bundleBytes - lackingBytes < 2_000_000, "\(bundleBytes) vs \(lackingBytes)")
        #expect(bundleBytes < fullBytes - (6 << 20))

        // The file lists exactly what the full bundle has and the differential does not: the shared configs and layers.
        let leftOut = try Inventory(contentsOf: site.differential.appendingPathComponent(DifferentialBundle.fileName).path)
        let absent = Set(full.keys).subtracting(differential.keys)
        #expect(Set(leftOut.blobs.keys.map(\.hex)) == absent)
        #expect(absent.isSubset(of: Set(old.keys)), "only what the site holds is left out")
        #expect(Set(differential.keys).isSubset(of: Set(full.keys)))
        for (digest, entry) in leftOut.blobs { #expect(full[digest.hex]?.size == entry.size, "\(digest)") }
        #expect(leftOut.manifests.isEmpty)
        guard case let .differential(against) = leftOut.source else { Issue.record("source \(leftOut.source)"); return }
        #expect(against.contains("registry \(site.target.host)/system/deckhouse") && against.contains("sha256 "), "\(against)")
        let text = try String(contentsOfFile: site.differential.appendingPathComponent(DifferentialBundle.fileName).path, encoding: .utf8)
        #expect(text.contains("`d8 mirror push` cannot push this bundle"))
        #expect(site.pullOutput.stderrString.contains("differential bundle: \(leftOut.blobs.count) blobs"), "\(site.pullOutput.stderrString)")
        let sums = try await TestProcess.run("sha256sum", ["-c", "SHA256SUMS"], currentDirectory: URL(fileURLWithPath: site.differential.path))
        #expect(sums.succeeded && sums.stdoutString.contains("\(DifferentialBundle.fileName): OK"), "\(sums.stdoutString)")

        // The dry-run says how much is left out.
        let dry = try await PullTests.pull(site.source, into: try TestRegistry.temporaryDirectory("dkp-diff-dry"),
                                           ["--deckhouse-tag", "v1.70.1", "--against", site.inventory, "--dry-run"])
        #expect(dry.status == 0 && dry.stdoutString.contains("\"leftOutBlobs\" : \(leftOut.blobs.count)"), "\(dry.stdoutString)")

        // Offline verify accepts it and says it is differential.
        let verified = try await CLITests.run(["verify", site.differential.path])
        #expect(verified.status == 0, "\(verified.stdoutString)\(verified.stderrString)")
        #expect(verified.stdoutString.contains("bundle OK") && verified.stdoutString.contains("differential bundle: \(leftOut.blobs.count) blobs"),
                "\(verified.stdoutString)")

        // One left-out blob only in the repository the list names, not in another one whose
        // images need it: push mounts it from there (the registry's link of it is removed).
        let (shared, sharedEntry) = try #require(leftOut.blobs.first { digest, entry in
            (full[digest.hex]?.layouts.count ?? 0) > 1 && full[digest.hex]?.layouts.contains(entry.repository) == true
        })
        let elsewhere = try #require(full[shared.hex]?.layouts.sorted().first { $0 != sharedEntry.repository })
        try FileManager.default.removeItem(at: site.target.storageDirectory.appendingPathComponent(
            "docker/registry/v2/repositories/system/deckhouse/\(elsewhere)/_layers/sha256/\(shared.hex)"))

        // Push completes the site: every reference at the digest of the full bundle.
        let pushed = try await PushTests.push(site.differential, to: site.target, password: Self.password)
        #expect(pushed.status == 0, "\(pushed.stderrString)")
        let result = try JSONDecoder().decode(PushTests.PushResult.self, from: Data(pushed.stdout))
        #expect(result.blobsMounted >= 1 && result.failures.isEmpty, "\(pushed.stdoutString)")
        let client = try Self.client(site.target)
        let mounted = try await client.blobSize(repository: "system/deckhouse/\(elsewhere)", digest: shared)
        await client.shutdown()
        #expect(mounted == sharedEntry.size, "\(shared) mounted into \(elsewhere) from \(sharedEntry.repository)")
        #expect(try await TargetCheck.expectComplete(site.target, password: Self.password, bundle: site.full, modules: TargetCheck.editionModules) > 30)
        let complete = try await CLITests.run(["verify", site.differential.path, "--registry", "\(site.target.host)/system/deckhouse",
                                               "--ca-file", site.target.caFile!, "-u", "rw", "--registry-password-stdin"], stdin: Self.password)
        #expect(complete.status == 0, "\(complete.stdoutString)\(complete.stderrString)")
        #expect(complete.stdoutString.contains("Blobs left out of this differential bundle"), "\(complete.stdoutString)")
        withExtendedLifetime((site.source, site.target)) {}
    }

    @Test func aSiteMissingALeftOutBlobIsRefusedBeforeAnythingIsPushed() async throws {
        let site = try await Self.site()
        let leftOut = try Inventory(contentsOf: site.differential.appendingPathComponent(DifferentialBundle.fileName).path)
        // The controller base layer: the largest left-out blob, needed by the v1.70.1 controller.
        let (digest, _) = try #require(leftOut.blobs.max { $0.value.size < $1.value.size })
        try FileManager.default.removeItem(at: site.target.storageDirectory.appendingPathComponent(
            "docker/registry/v2/blobs/sha256/\(digest.hex.prefix(2))/\(digest.hex)"))
        let client = try Self.client(site.target)
        let gone = try await client.blobSize(repository: "system/deckhouse", digest: digest)
        await client.shutdown()
        #expect(gone == nil, "the site lacks the blob now")
        let before = try await Self.tagSnapshot(site.target)

        let dryRun = try await PushTests.push(site.differential, to: site.target, password: Self.password, ["--dry-run"])
        #expect(dryRun.stdoutString.contains("\"missing\" : 1"), "\(dryRun.stdoutString)")
        let pushed = try await PushTests.push(site.differential, to: site.target, password: Self.password)
        #expect(pushed.status == 1, "\(pushed.stderrString)")
        let line = pushed.stderrString.split(separator: "\n").first { $0.contains("lacks 1 of the \(leftOut.blobs.count) blobs") }
        #expect(line != nil, "\(pushed.stderrString)")
        #expect(line?.contains("needed by platform.tar:/ v1.70.1") == true, "\(line ?? "")")
        #expect(line?.contains(digest.string) == true, "\(line ?? "")")
        #expect(!pushed.stderrString.contains(Self.password))
        // The tar alone (--file) is read with the list beside it: refused the same way.
        let alone = try await CLITests.run(["push", "\(site.target.host)/system/deckhouse", "--file",
                                            site.differential.appendingPathComponent("platform.tar").path, "--ca-file", site.target.caFile!,
                                            "-u", "rw", "--registry-password-stdin", "--progress", "none"], stdin: Self.password)
        #expect(alone.status == 1 && alone.stderrString.contains("lacks 1 of the"), "\(alone.stderrString)")
        let after = try await Self.tagSnapshot(site.target)
        #expect(after == before, "no tag appeared or changed")
        #expect(before["system/deckhouse"]?.contains("v1.70.1") == false)
        withExtendedLifetime((site.source, site.target)) {}
    }

    @Test func aFullPullIsUnchangedAndBrokenListsAreErrorsOfVerifyAndPush() async throws {
        let site = try await Self.site()
        // Without --against: no extra file, SHA256SUMS lists the tars only.
        let files = try FileManager.default.contentsOfDirectory(atPath: site.full.path).filter { !$0.hasPrefix(".") }
        #expect(files.allSatisfy { $0.hasSuffix(".tar") || $0 == "SHA256SUMS" }, "\(files)")
        #expect(try !String(contentsOf: site.full.appendingPathComponent("SHA256SUMS"), encoding: .utf8).contains("inventory"))

        // A damaged list: verify names it (exit 1), push refuses it (exit 2).
        let damaged = try Self.copy(site.differential)
        let file = damaged.appendingPathComponent(DifferentialBundle.fileName)
        var bytes = try Data(contentsOf: file)
        let position = try #require(bytes.firstIndex(of: UInt8(ascii: "\n"), after: bytes.count / 2))
        bytes[position - 1] = bytes[position - 1] == UInt8(ascii: "1") ? UInt8(ascii: "2") : UInt8(ascii: "1")
        try bytes.write(to: file)
        let verifyDamaged = try await CLITests.run(["verify", damaged.path])
        #expect(verifyDamaged.status == 1)
        #expect(verifyDamaged.stdoutString.contains("\(DifferentialBundle.fileName) line") && verifyDamaged.stdoutString.contains("checksum"),
                "\(verifyDamaged.stdoutString)")
        let pushDamaged = try await PushTests.push(damaged, to: site.target, password: Self.password)
        #expect(pushDamaged.status == 2 && pushDamaged.stderrString.contains(DifferentialBundle.fileName), "\(pushDamaged.stderrString)")

        // A blob absent from the tars and not listed: an error of the bundle for both.
        let unlisted = try Self.copy(site.differential)
        var list = try Inventory(contentsOf: unlisted.appendingPathComponent(DifferentialBundle.fileName).path)
        let (digest, _) = try #require(list.blobs.max { $0.value.size < $1.value.size })
        list.blobs[digest] = nil
        try list.write(to: unlisted.appendingPathComponent(DifferentialBundle.fileName).path)
        let verifyUnlisted = try await CLITests.run(["verify", unlisted.path])
        #expect(verifyUnlisted.status == 1)
        #expect(verifyUnlisted.stdoutString.contains("blob \(digest)") && verifyUnlisted.stdoutString.contains("does not list it"),
                "\(verifyUnlisted.stdoutString)")
        let pushUnlisted = try await PushTests.push(unlisted, to: site.target, password: Self.password)
        #expect(pushUnlisted.status == 1 && pushUnlisted.stderrString.contains("blob \(digest) is missing from the bundle"), "\(pushUnlisted.stderrString)")

        // A damaged --against inventory: exit 2 naming the file, nothing written.
        let badInventory = try TestRegistry.temporaryDirectory("dkp-diff-bad").appendingPathComponent("cut.inventory")
        let inventoryText = try String(contentsOfFile: site.inventory, encoding: .utf8)
        try String(inventoryText.dropLast(30)).write(to: badInventory, atomically: true, encoding: .utf8)
        let into = try TestRegistry.temporaryDirectory("dkp-diff-none")
        let refused = try await PullTests.pull(site.source, into: into, ["--deckhouse-tag", "v1.70.1", "--against", badInventory.path])
        #expect(refused.status == 2 && refused.stderrString.contains(badInventory.path), "\(refused.stderrString)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: into.path).filter { !$0.hasPrefix(".") }.isEmpty)
        try await Self.checkRerunsAndFingerprints(site)
        withExtendedLifetime((site.source, site.target)) {}
    }

    /// The same --against again resumes (nothing downloaded); no --against into the same
    /// directory is another pull (the left-out set is in the tars' fingerprints): refused, and
    /// with --force the bundle becomes the full one, left-out list gone.
    static func checkRerunsAndFingerprints(_ site: Site) async throws {
        let same = try await PullTests.pull(site.source, into: site.differential, ["--deckhouse-tag", "v1.70.1", "--against", site.inventory])
        #expect(same.status == 0 && same.stdoutString.contains("\"bytesTransferred\" : 0"), "\(same.stdoutString)\(same.stderrString)")
        let full = try await PullTests.pull(site.source, into: site.differential, ["--deckhouse-tag", "v1.70.1"])
        #expect(full.status == 2 && full.stderrString.contains("holds a bundle of another pull"), "\(full.stderrString)")
        let forced = try await PullTests.pull(site.source, into: site.differential, ["--deckhouse-tag", "v1.70.1", "--force"])
        #expect(forced.status == 0, "\(forced.stderrString)")
        let names = try FileManager.default.contentsOfDirectory(atPath: site.differential.path)
        #expect(!names.contains(DifferentialBundle.fileName), "\(names)")
        #expect(try Self.tarBytes(site.differential) == Self.tarBytes(site.full))
        let verified = try await CLITests.run(["verify", site.differential.path])
        #expect(verified.status == 0 && !verified.stdoutString.contains("differential"), "\(verified.stdoutString)")
    }

    @Test func theLeftOutListIsAnInventoryWithADifferentialSource() throws {
        let digest = try Digest(sha256Hex: String(repeating: "ab", count: 32))
        let list = Inventory(source: .differential("against registry r.example:5000/system/deckhouse (created 2026-12-02T12:00:00Z, sha256 00ff)"),
                             blobs: [digest: .init(size: 42, repository: "modules/console")])
        let bytes = list.serialized()
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.hasPrefix("dkp-mirror-inventory 1\n# dkp-mirror left-out blobs: this bundle is DIFFERENTIAL."))
        #expect(text.contains("\nsource differential against registry r.example:5000/system/deckhouse (created 2026-12-02T12:00:00Z, sha256 00ff)\n"))
        #expect(text.contains("\nblob \(digest) 42 modules/console\n"))
        #expect(try Inventory(parsing: bytes) == list)
        // An inventory of a registry still reads as before.
        let site = Inventory(source: .registry("r.example:5000/system/deckhouse"), blobs: [digest: .init(size: 42, repository: "")])
        #expect(try Inventory(parsing: site.serialized()) == site)
        #expect(!String(decoding: site.serialized(), as: UTF8.self).contains("DIFFERENTIAL"))
    }

    /// A copy of a bundle directory (tars, SHA256SUMS, the left-out list).
    static func copy(_ bundle: URL) throws -> URL {
        let copy = try TestRegistry.temporaryDirectory("dkp-diff-copy")
        for name in try FileManager.default.contentsOfDirectory(atPath: bundle.path) where !name.hasPrefix(".") {
            try FileManager.default.copyItem(at: bundle.appendingPathComponent(name), to: copy.appendingPathComponent(name))
        }
        return copy
    }
}

extension Data {
    func firstIndex(of byte: UInt8, after start: Int) -> Int? {
        self[start...].firstIndex(of: byte)
    }
}
