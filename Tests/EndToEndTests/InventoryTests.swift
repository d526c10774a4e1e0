import Foundation
import Mirror
import OCI
import Registry
import Streams
import Testing
import TestSupport

/// `dkp-mirror inventory` and its file format, against real registries and bundles.
@Suite struct InventoryTests {
    static func run(_ arguments: [String], stdin: String? = nil) async throws -> TestProcess.Output {
        try await CLITests.run(["inventory"] + arguments, stdin: stdin)
    }

    /// The inventory `inventory --bundle` writes of `bundle`.
    static func bundleInventory(_ bundle: URL, into folder: URL) async throws -> Inventory {
        let file = folder.appendingPathComponent("bundle.inventory").path
        let output = try await run(["--bundle", bundle.path, "-o", file])
        #expect(output.status == 0, "\(output.stderrString)")
        return try Inventory(contentsOf: file)
    }

    /// hex -> the layouts whose blobs/sha256 hold it, with its size: read from the extracted tars.
    static func extractedBlobs(_ bundle: URL) async throws -> [String: (size: Int64, layouts: Set<String>)] {
        var found: [String: (size: Int64, layouts: Set<String>)] = [:]
        for tar in try FileManager.default.contentsOfDirectory(atPath: bundle.path) where tar.hasSuffix(".tar") {
            let folder = try await PullTests.extract([bundle.appendingPathComponent(tar)])
            let enumerator = FileManager.default.enumerator(atPath: folder.path)
            while let path = enumerator?.nextObject() as? String {
                let parts = path.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count >= 3, parts[parts.count - 3] == "blobs", parts[parts.count - 2] == "sha256" else { continue }
                let layout = parts.dropLast(3).joined(separator: "/")
                let size = try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(path).path)[.size] as? Int64 ?? -1
                found[String(parts[parts.count - 1]), default: (size, [])].layouts.insert(layout)
            }
        }
        return found
    }

    @Test func registryInventoryAfterPushListsEveryManifestAndBlobOfTheBundle() async throws {
        let (source, bundle) = try await PushTests.pulledBundle()
        let target = try await TestRegistry.start(tls: true, users: ["rw": "inv-pw-52"])
        let pushed = try await PushTests.push(bundle, to: target, password: "inv-pw-52")
        #expect(pushed.status == 0, "\(pushed.stderrString)")
        let folder = try TestRegistry.temporaryDirectory("dkp-inventory")
        let file = folder.appendingPathComponent("site.inventory").path
        let output = try await Self.run(["--registry", "\(target.host)/system/deckhouse", "--ca-file", target.caFile!,
                                         "-u", "rw", "--registry-password-stdin", "-o", file, "--progress", "plain", "-j", "4"],
                                        stdin: "inv-pw-52")
        #expect(output.status == 0, "\(output.stderrString)")
        #expect(!(output.stdoutString + output.stderrString).contains("inv-pw-52"))
        #expect(output.stderrString.contains("(from _catalog)"), "\(output.stderrString)")
        #expect(output.stderrString.contains("tags read"), "progress lines: \(output.stderrString)")
        let site = try Inventory(contentsOf: file)
        #expect(site.source == .registry("\(target.host)/system/deckhouse"))

        // Everything the bundle's tars hold is listed, with its size, as a manifest or a blob.
        let extracted = try await Self.extractedBlobs(bundle)
        #expect(extracted.count > 40)
        for (hex, file) in extracted {
            let digest = try Digest(sha256Hex: hex)
            let entry = site.manifests[digest] ?? site.blobs[digest]
            #expect(entry?.size == file.size, "\(hex) in \(file.layouts)")
        }
        #expect(site.manifests.count + site.blobs.count == extracted.count)
        #expect(site.totalBlobBytes == site.blobs.values.reduce(0) { $0 + $1.size })

        // The bundle's own inventory names the same digests, each in a layout that holds it.
        let fromBundle = try await Self.bundleInventory(bundle, into: folder)
        #expect(Set(fromBundle.manifests.keys) == Set(site.manifests.keys))
        #expect(Set(fromBundle.blobs.keys) == Set(site.blobs.keys))
        for (digest, entry) in fromBundle.manifests.merging(fromBundle.blobs, uniquingKeysWith: { a, _ in a }) {
            #expect(extracted[digest.hex]?.layouts.contains(entry.repository) == true, "\(digest) in \(entry.repository)")
        }
        try await Self.headEveryItem(site, in: target, password: "inv-pw-52")
        try await Self.checkCatalogPages(target, password: "inv-pw-52")
        withExtendedLifetime((source, target)) {}
    }

    /// Every item is where the inventory says: a HEAD of the manifest or blob in its repository, with its size.
    static func headEveryItem(_ inventory: Inventory, in target: TestRegistry, password: String?) async throws {
        var configuration = RegistryConfiguration()
        configuration.caFile = target.caFile
        configuration.insecure = !target.isTLS
        configuration.credential = password.map { Credential(username: "rw", password: $0) }
        let missing = try await RegistryClient.with(host: target.host, configuration: configuration) { client in
            var missing: [String] = []
            for (digest, entry) in inventory.manifests {
                let repository = entry.repository.isEmpty ? "system/deckhouse" : "system/deckhouse/\(entry.repository)"
                let found = try await client.manifestDescriptor(repository: repository, reference: digest.string)
                if found?.size != entry.size { missing.append("manifest \(digest) in \(repository)") }
            }
            for (digest, entry) in inventory.blobs {
                let repository = entry.repository.isEmpty ? "system/deckhouse" : "system/deckhouse/\(entry.repository)"
                let size = try await client.blobSize(repository: repository, digest: digest)
                if size != entry.size { missing.append("blob \(digest) in \(repository)") }
            }
            return missing
        }
        #expect(missing.isEmpty, "\(missing.prefix(5))")
    }

    /// `_catalog` in pages of two (`n`, `Link`) gives what one page gives.
    static func checkCatalogPages(_ target: TestRegistry, password: String) async throws {
        var configuration = RegistryConfiguration()
        configuration.caFile = target.caFile
        configuration.credential = Credential(username: "rw", password: password)
        let (paged, whole) = try await RegistryClient.with(host: target.host, configuration: configuration) { client in
            (try await client.catalog(pageSize: 2), try await client.catalog())
        }
        #expect((whole?.count ?? 0) > 10)
        #expect(paged == whole)
    }

    @Test func refusedCatalogWalksTheDKPLayoutAndFindsTheSame() async throws {
        let (source, bundle) = try await PushTests.pulledBundle()
        let registry = try await TestRegistry.start()
        let proxy = try await HTTPFaultProxy.start(upstream: registry, rules: [.init(.status(403), pathContains: "/v2/_catalog")])
        // Modules under another suffix: the file still names bundle layout paths (modules/...).
        let pushed = try await CLITests.run(["push", bundle.path, "\(registry.host)/system/deckhouse", "--insecure",
                                             "--modules-path-suffix", "/mods", "--progress", "none"])
        #expect(pushed.status == 0, "\(pushed.stderrString)")
        #expect(pushed.stderrString.contains("note: modules go to \(registry.host)/system/deckhouse/mods, not to \(registry.host)/system/deckhouse/modules"),
                "\(pushed.stderrString)")
        let folder = try TestRegistry.temporaryDirectory("dkp-inventory")
        var found: [String: Inventory] = [:]
        for (name, host) in [("catalog", registry.host), ("walk", proxy.host)] {
            let file = folder.appendingPathComponent("\(name).inventory").path
            let output = try await Self.run(["--registry", "\(host)/system/deckhouse", "--insecure", "--modules-path-suffix", "/mods",
                                             "-o", file, "--json", "--progress", "none"])
            #expect(output.status == 0, "\(output.stderrString)")
            #expect(output.stdoutString.contains("\"walk\" : \"\(name == "walk" ? "layout" : "catalog")\""), "\(output.stdoutString)")
            found[name] = try Inventory(contentsOf: file)
        }
        #expect(proxy.requestLines.contains { $0.hasPrefix("GET /v2/_catalog") }, "the catalog was asked for and refused")
        let fromBundle = try await Self.bundleInventory(bundle, into: folder)
        for inventory in found.values {
            #expect(Set(inventory.manifests.keys) == Set(fromBundle.manifests.keys))
            #expect(Set(inventory.blobs.keys) == Set(fromBundle.blobs.keys))
            // Layout paths: the bundle's, or the discovery repositories push adds.
            let paths = Set(fromBundle.repositories).union(["modules", "packages", "deckhouse-cli/plugins"])
            #expect(Set(inventory.repositories).isSubset(of: paths), "\(Set(inventory.repositories).subtracting(paths))")
        }
        #expect(found["walk"]?.repositories.contains { $0.hasPrefix("modules/console/extra/") } == true,
                "extra images found through extra_images.json")
        await proxy.shutdown()
        withExtendedLifetime((source, registry)) {}
    }
}

/// The file format: what is written is read back whole; anything damaged is refused, naming the line.
extension InventoryTests {
    static func sample() throws -> Inventory {
        let digests = try (1...5).map { try Digest(sha256Hex: String(repeating: String($0), count: 64)) }
        return Inventory(source: .bundle("/srv/bundles/last one"), created: Date(timeIntervalSince1970: 1_796_212_800.7),
                         manifests: [digests[0]: .init(size: 1234, repository: ""), digests[1]: .init(size: 99, repository: "modules/console/release")],
                         blobs: [digests[2]: .init(size: 7 << 30, repository: "security/trivy-db"),
                                 digests[3]: .init(size: 0, repository: "modules/console/extra/foo"),
                                 digests[4]: .init(size: 512, repository: "")])
    }

    @Test func writtenAndReadBackIsTheSame() throws {
        let inventory = try Self.sample()
        let folder = try TestRegistry.temporaryDirectory("dkp-inventory")
        let path = folder.appendingPathComponent("x.inventory").path
        try inventory.write(to: path)
        let read = try Inventory(contentsOf: path)
        #expect(read == inventory)
        #expect(read.created == Date(timeIntervalSince1970: 1_796_212_800), "whole seconds")
        #expect(try Inventory(parsing: inventory.serialized()) == inventory)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["x.inventory"], "no temporary file left")

        let lines = String(decoding: inventory.serialized(), as: UTF8.self).split(separator: "\n")
        #expect(lines.first == "dkp-mirror-inventory 1")
        #expect(lines.contains("source bundle /srv/bundles/last one"))
        #expect(lines.contains("created 2026-12-02T12:00:00Z"))
        let items = lines.filter { $0.hasPrefix("manifest ") || $0.hasPrefix("blob ") }
        #expect(items.first == "manifest sha256:\(String(repeating: "1", count: 64)) 1234 .")
        #expect(items.map { $0.split(separator: " ")[0] } == ["manifest", "manifest", "blob", "blob", "blob"])
        #expect(items.contains("blob sha256:\(String(repeating: "3", count: 64)) \(7 << 30) security/trivy-db"))
        let body = Array(inventory.serialized().dropLast(64 + 8))  // "sha256 " + hex + "\n"
        #expect(lines.last == "sha256 \(SHA256.digest(of: body).hex)")
    }

    @Test func inventoriesMergeKeepingTheFirstRepositoryName() throws {
        let sample = try Self.sample()
        let shared = try Digest(sha256Hex: String(repeating: "3", count: 64))
        let extra = try Digest(sha256Hex: String(repeating: "6", count: 64))
        let other = Inventory(source: .registry("r.example/x"),
                              blobs: [shared: .init(size: 7 << 30, repository: "install"), extra: .init(size: 1, repository: "release-channel")])
        var builder = InventoryBuilder()
        builder.add(sample)
        builder.add(other)
        let merged = builder.inventory(source: .bundle("both"))
        #expect(merged.manifests == sample.manifests)
        #expect(merged.blobs.count == 4)
        #expect(merged.blobs[shared]?.repository == "install", "'install' sorts before 'security/trivy-db'")
        #expect(merged.blobs[extra] == .init(size: 1, repository: "release-channel"))
        #expect(merged.totalBlobBytes == sample.totalBlobBytes + 1)
    }

    /// `bytes` with the checksum line made anew, so only the change under test is wrong.
    static func resealed(_ text: String) -> [UInt8] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast(2)  // the checksum line and the empty piece after the last "\n"
        let body = Array((lines.joined(separator: "\n") + "\n").utf8)
        return body + Array("sha256 \(SHA256.digest(of: body).hex)\n".utf8)
    }

    @Test func damagedFilesAreRefusedNamingTheLine() async throws {
        let good = try Self.sample()
        let text = String(decoding: good.serialized(), as: UTF8.self)
        let lineCount = text.split(separator: "\n").count
        #expect(lineCount == 11, "5 header and comment lines, 5 items, the checksum")
        var newer = good
        newer.formatVersion = 2
        var flipped = good.serialized()
        flipped[flipped.count / 2] ^= 0x01
        let cases: [(name: String, bytes: [UInt8], line: Int, says: String)] = [
            ("one byte changed", flipped, lineCount, "the checksum does not match"),
            ("the last line dropped", Array(text.split(separator: "\n").dropLast().joined(separator: "\n").utf8), lineCount - 1, "the last line is"),
            ("a wrong last line", Array((text + "extra\n").utf8), lineCount + 1, "not 'sha256 <64 hex digits>'"),
            ("version 2", newer.serialized(), 1, "format version 2 is not supported"),
            ("a malformed digest", Self.resealed(text.replacingOccurrences(of: "blob sha256:4444", with: "blob sha256:zzzz")), 9, "is not a hex digit"),
            ("a size that is no number", Self.resealed(text.replacingOccurrences(of: " 1234 .", with: " 12x4 .")), 6, "is not a whole number"),
            ("a repository with a space", Self.resealed(text.replacingOccurrences(of: " modules/console/release", with: " modules/con sole")), 7, "5 fields"),
            ("an uppercase repository", Self.resealed(text.replacingOccurrences(of: "security/trivy-db", with: "security/Trivy")), 8, "uppercase"),
            ("a digest twice", Self.resealed(text.replacingOccurrences(of: String(repeating: "5", count: 64), with: String(repeating: "4", count: 64))), 10,
             "blob sha256:\(String(repeating: "4", count: 64)) is listed twice"),
            ("an unknown line", Self.resealed(text.replacingOccurrences(of: "created ", with: "made ")), 5, "is not a 'source', 'created'"),
        ]
        let folder = try TestRegistry.temporaryDirectory("dkp-inventory")
        for item in cases {
            #expect(throws: InventoryError.self, "\(item.name)") { try Inventory(parsing: item.bytes) }
            do {
                _ = try Inventory(parsing: item.bytes, path: "f")
            } catch let error as InventoryError {
                #expect(error.line == item.line, "\(item.name): \(error)")
                #expect(error.problem.contains(item.says), "\(item.name): \(error)")
            }
            let path = folder.appendingPathComponent("bad.inventory").path
            try Data(item.bytes).write(to: URL(fileURLWithPath: path))
            let output = try await Self.run(["--check", path])
            #expect(output.status == 2, "\(item.name): \(output.stderrString)")
            #expect(output.stderrString.contains("inventory \(path) line \(item.line): "), "\(item.name): \(output.stderrString)")
        }
        let path = folder.appendingPathComponent("good.inventory").path
        try good.write(to: path)
        let output = try await Self.run(["--check", path])
        #expect(output.status == 0, "\(output.stderrString)")
        #expect(output.stderrString.contains("2 manifests, 3 blobs"), "\(output.stderrString)")
    }

    @Test func badUsageIsExitTwoAndLeavesTheOutputAlone() async throws {
        let folder = try TestRegistry.temporaryDirectory("dkp-inventory")
        let out = folder.appendingPathComponent("out.inventory")
        try Data("an earlier file\n".utf8).write(to: out)
        let cases: [(arguments: [String], says: String)] = [
            (["-o", out.path], "exactly one of --registry"),
            (["--registry", "127.0.0.1:1/x", "--bundle", folder.path, "-o", out.path], "exactly one of --registry"),
            (["--bundle", folder.appendingPathComponent("none").path, "-o", out.path], "none"),
            (["--bundle", folder.path, "-o", out.path], folder.lastPathComponent),
            (["--registry", "127.0.0.1:1", "-o", out.path], "--registry"),
            (["--registry", "127.0.0.1:1/x:v1", "-o", out.path], "names an image"),
            (["--bundle", folder.path, "-o", folder.appendingPathComponent("no/such/f").path], "does not exist"),
            (["--bundle", folder.path], "-o FILE"),
        ]
        for item in cases {
            let output = try await Self.run(item.arguments)
            #expect(output.status == 2, "\(item.arguments): \(output.stderrString)")
            #expect(output.stderrString.contains(item.says), "\(item.arguments): \(output.stderrString)")
            #expect(try String(contentsOf: out, encoding: .utf8) == "an earlier file\n")
        }
    }
}
