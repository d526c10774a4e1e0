import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// `dkp-mirror pull` of a synthetic edition from a real registry, checked by opening the tars.
@Suite struct PullTests {
    struct PullResult: Decodable {
        var files: [String]; var images: Int; var blobs: Int
        var bytesTransferred: Int64; var bytesAlreadyPresent: Int64; var peakResidentBytes: Int64
        var secondsToFirstBlobByte: Double?
    }

    struct Plan: Decodable {
        var versions: [String]; var channels: [String: String]; var modules: [String: [String]]; var blobs: Int; var bytes: Int64
    }

    /// A registry seeded once per test with the synthetic edition.
    static func seededEdition(_ adjust: (inout EditionSeeder.Options) -> Void = { _ in }) async throws -> (TestRegistry, EditionSeeder.Seeded) {
        let registry = try await TestRegistry.start()
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        var options = EditionSeeder.Options()
        adjust(&options)
        let seeded = try await RegistryClient.with(host: registry.host, configuration: configuration) { client in
            try await EditionSeeder(client: client, options: options).seed()
        }
        return (registry, seeded)
    }

    static func pull(_ registry: TestRegistry, into directory: URL, _ extra: [String]) async throws -> TestProcess.Output {
        try await CLITests.run(["pull", directory.path, "--source", "\(registry.host)/deckhouse/ee", "--insecure",
                                "--json", "--progress", "none"] + extra)
    }

    /// Extracts a tar (or its chunks, concatenated) with GNU tar into a fresh folder.
    static func extract(_ files: [URL]) async throws -> URL {
        let folder = try TestRegistry.temporaryDirectory("dkp-extract")
        let whole = folder.appendingPathComponent("whole.tar")
        var bytes = Data()
        for file in files { bytes.append(try Data(contentsOf: file)) }
        try bytes.write(to: whole)
        let out = try await TestProcess.run("tar", ["-xf", whole.path, "-C", folder.path])
        #expect(out.succeeded, "tar: \(out.stderrString)")
        try FileManager.default.removeItem(at: whole)
        return folder
    }

    struct IndexFile: Decodable {
        var mediaType: String?
        var manifests: [Descriptor]
    }

    static func index(_ folder: URL, _ layout: String) throws -> IndexFile {
        let path = layout.isEmpty ? "index.json" : "\(layout)/index.json"
        return try JSONDecoder().decode(IndexFile.self, from: Data(contentsOf: folder.appendingPathComponent(path)))
    }

    /// Every layout in `folder` is complete: oci-layout present, every blob hashes to its
    /// name, and every manifest's children, config and layers are there.
    static func checkLayouts(_ folder: URL) throws -> Int {
        let enumerator = FileManager.default.enumerator(atPath: folder.path)
        var layouts = 0
        while let path = enumerator?.nextObject() as? String {
            guard (path as NSString).lastPathComponent == "index.json" else { continue }
            layouts += 1
            let dir = folder.appendingPathComponent((path as NSString).deletingLastPathComponent)
            #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("oci-layout").path), "\(path)")
            let index = try JSONDecoder().decode(IndexFile.self, from: Data(contentsOf: folder.appendingPathComponent(path)))
            #expect(index.mediaType == "application/vnd.oci.image.layout.v1+json")
            var queue = index.manifests
            while let descriptor = queue.popLast() {
                let blob = dir.appendingPathComponent("blobs/sha256/\(descriptor.digest.hex)")
                guard let bytes = FileManager.default.contents(atPath: blob.path) else {
                    Issue.record("\(path): blob \(descriptor.digest) missing"); continue
                }
                #expect(Int64(bytes.count) == descriptor.size)
                #expect(TestCrypto.sha256Digest(Array(bytes)) == descriptor.digest.string)
                if descriptor.mediaType.isManifest, let document = try? ManifestDocument.parse(Array(bytes), contentType: descriptor.mediaType) {
                    queue += document.references
                }
            }
        }
        return layouts
    }

    @Test func pullOneTagProducesTheD8Bundle() async throws {
        let (registry, seeded) = try await Self.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await Self.pull(registry, into: directory, ["--deckhouse-tag", "v1.69.3"])
        #expect(output.status == 0, "\(output.stderrString)")
        let result = try JSONDecoder().decode(PullResult.self, from: Data(output.stdout))
        #expect(Set(result.files) == ["platform.tar", "installer.tar", "security.tar",
                                     "module-console.tar", "module-commander.tar", "module-stronghold.tar",
                                     "package-nginx-tools.tar", "package-versions.tar", "plugin-module-tools.tar", "plugin-diag.tar"])
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(!files.contains { $0.hasSuffix(".partial") || $0.hasSuffix(".journal") })
        let sums = try await TestProcess.run("sha256sum", ["-c", "SHA256SUMS"], currentDirectory: directory)
        #expect(sums.succeeded, "\(sums.stdoutString) \(sums.stderrString)")

        let platform = try await Self.extract([directory.appendingPathComponent("platform.tar")])
        #expect(try Self.checkLayouts(platform) == 4)
        let root = try Self.index(platform, "")
        let host = registry.host
        let refs = Dictionary(root.manifests.map { ($0.annotations?["org.opencontainers.image.ref.name"] ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        #expect(refs["\(host)/deckhouse/ee:v1.69.3"]?.digest == seeded.controller["v1.69.3"])
        #expect(refs["\(host)/deckhouse/ee:v1.69.3"]?.annotations?["io.deckhouse.image.short_tag"] == "v1.69.3")
        for digest in seeded.platformDigests["v1.69.3"] ?? [] {
            let entry = refs["\(host)/deckhouse/ee@\(digest)"]
            #expect(entry?.digest == digest)
            #expect(entry?.annotations?["io.deckhouse.image.short_tag"] == digest.hex)
        }
        #expect(!refs.keys.contains("\(host)/deckhouse/ee:v1.68.4"), "only the asked tag")
        // The version's channel image answers on all five channels.
        let channels = try Self.index(platform, "release-channel").manifests.compactMap { $0.annotations?["io.deckhouse.image.short_tag"] }
        #expect(Set(channels) == ["v1.69.3", "alpha", "beta", "early-access", "stable", "rock-solid"])
        let sortedRefs = root.manifests.compactMap { $0.annotations?["org.opencontainers.image.ref.name"] }
        #expect(sortedRefs == sortedRefs.sorted())

        let console = try await Self.extract([directory.appendingPathComponent("module-console.tar")])
        #expect(try Self.checkLayouts(console) == 3)  // modules/console, .../release, .../extra/scanner
        let moduleTags = try Self.index(console, "modules/console").manifests.compactMap { $0.annotations?["io.deckhouse.image.short_tag"] }
        #expect(moduleTags.contains("v1.2.0") && moduleTags.contains("v1.1.5"))
        #expect(try Self.index(console, "modules/console/extra/scanner").manifests.first?.annotations?["io.deckhouse.image.short_tag"] == "v0.3.1")

        let security = try await Self.extract([directory.appendingPathComponent("security.tar")])
        #expect(try Self.checkLayouts(security) == 4)
        #expect(try Self.index(security, "security/trivy-db").manifests.first?.digest == seeded.securityDigests["trivy-db"])
    }

    @Test func defaultRangeAndChunkedPull() async throws {
        let (registry, _) = try await Self.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let dry = try await Self.pull(registry, into: directory, ["--dry-run", "--no-modules"])
        #expect(dry.status == 0, "\(dry.stderrString)")
        let plan = try JSONDecoder().decode(Plan.self, from: Data(dry.stdout))
        #expect(plan.versions == ["v1.67.5", "v1.68.4", "v1.69.3", "v1.70.1"])
        #expect(plan.channels["rock-solid"] == "v1.67.5" && plan.channels["alpha"] == "v1.70.1")
        // A pin: the channels as the bundle serves them, the pinned version on each.
        let pinned = try await Self.pull(registry, into: directory, ["--dry-run", "--no-modules", "--deckhouse-tag", "stable"])
        #expect(try JSONDecoder().decode(Plan.self, from: Data(pinned.stdout)).channels
                == Dictionary(uniqueKeysWithValues: ["alpha", "beta", "early-access", "stable", "rock-solid"].map { ($0, "v1.68.4") }), "\(pinned.stderrString)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty, "a dry run writes nothing")

        let whole = try await Self.pull(registry, into: directory, ["--no-modules"])
        #expect(whole.status == 0, "\(whole.stderrString)")
        let platform = try await Self.extract([directory.appendingPathComponent("platform.tar")])
        let rootTags = Set(try Self.index(platform, "").manifests.compactMap { $0.annotations?["io.deckhouse.image.short_tag"] })
        #expect(rootTags.isSuperset(of: ["v1.67.5", "v1.68.4", "v1.69.3", "v1.70.1"]))
        #expect(!rootTags.contains("v1.67.2") && !rootTags.contains("v1.66.9"))
        // Channel names live in release-channel and install only, as current d8 writes them.
        #expect(rootTags.isDisjoint(with: ["stable", "alpha", "rock-solid"]))
        let installTags = Set(try Self.index(platform, "install").manifests.compactMap { $0.annotations?["io.deckhouse.image.short_tag"] })
        #expect(installTags.isSuperset(of: ["stable", "alpha", "beta", "early-access", "rock-solid"]))
        _ = try Self.checkLayouts(platform)

        // The same pull cut into 200 kB chunks: the chunks, concatenated, are the same tar.
        let chunked = try TestRegistry.temporaryDirectory("dkp-bundle-chunked")
        let output = try await Self.pull(registry, into: chunked, ["--no-modules", "-c", "0.0002"])
        #expect(output.status == 0, "\(output.stderrString)")
        let names = try FileManager.default.contentsOfDirectory(atPath: chunked.path).filter { $0.hasPrefix("platform.tar.") }.sorted()
        #expect(names.count > 2)
        #expect(names.first == "platform.tar.0000.chunk")
        var joined = Data()
        for name in names { joined.append(try Data(contentsOf: chunked.appendingPathComponent(name))) }
        #expect(joined == (try Data(contentsOf: directory.appendingPathComponent("platform.tar"))))
        let sums = try await TestProcess.run("sha256sum", ["-c", "SHA256SUMS"], currentDirectory: chunked)
        #expect(sums.succeeded)
        #expect(sums.stdoutString.contains("platform.tar.0000.chunk: OK"))
    }

    @Test func killedPullResumesWithoutDownloadingAgain() async throws {
        let (registry, _) = try await Self.seededEdition { $0.baseLayerSize = 24 << 20; $0.imageLayerSize = 1 << 20 }
        let proxy = try await FaultProxy.start(upstream: registry)
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let arguments = ["--deckhouse-tag", "v1.69.3", "--no-modules", "-j", "2"]

        // Through a proxy that stalls every connection after 6 MB, the pull hangs midway; kill it.
        proxy.setFault(.stall(afterBytes: 6_000_000))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLITests.executable)
        // --timeout 3: a connection stalled while discovery reads a layer comes back soon, so the
        // transfer starts whatever the machine's load; --retries 60, so those stalls (and spurious
        // timeouts of a loaded suite) never end the run before it is killed.
        process.arguments = ["pull", directory.path, "--source", "\(proxy.host)/deckhouse/ee", "--insecure", "--progress", "none",
                             "--timeout", "3", "--retries", "60"] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Kill once the journal holds something beyond its header and transfers have stalled.
        let journal = directory.appendingPathComponent("platform.tar.journal").path
        func journalSize() -> Int { ((try? FileManager.default.attributesOfItem(atPath: journal))?[.size] as? Int) ?? 0 }
        var header: Int?
        // Generous: in a loaded suite (CI) discovery alone, its connections stalling too, took minutes.
        let deadline = ContinuousClock.now + .seconds(480)
        while ContinuousClock.now < deadline, process.isRunning {
            let size = journalSize()
            if header == nil, size > 0 { header = size }
            if let header, size > header, proxy.stallsPerformed >= 2 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(process.processIdentifier, SIGKILL)
        try await Blocking.run { process.waitUntilExit() }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(!leftovers.contains("platform.tar"), "nothing looks complete after a kill: \(leftovers)")
        #expect(leftovers.contains { $0.hasSuffix(".partial") })

        // The re-run (same source, the proxy no longer stalling) finishes and reuses what was written.
        proxy.setFault(.none)
        let source = ["--source", "\(proxy.host)/deckhouse/ee"]
        let resumed = try await Self.pull(registry, into: directory, arguments + source)
        #expect(resumed.status == 0, "\(resumed.stderrString)")
        let result = try JSONDecoder().decode(PullResult.self, from: Data(resumed.stdout))
        #expect(result.bytesAlreadyPresent > 0)

        // Byte for byte what a clean pull writes.
        let fresh = try TestRegistry.temporaryDirectory("dkp-bundle-fresh")
        let clean = try await Self.pull(registry, into: fresh, arguments + source)
        #expect(clean.status == 0)
        let cleanResult = try JSONDecoder().decode(PullResult.self, from: Data(clean.stdout))
        #expect(result.bytesTransferred < cleanResult.bytesTransferred)
        #expect(try String(contentsOf: directory.appendingPathComponent("SHA256SUMS"), encoding: .utf8)
                == String(contentsOf: fresh.appendingPathComponent("SHA256SUMS"), encoding: .utf8))

        // A third run finds everything done and downloads nothing.
        let again = try await Self.pull(registry, into: directory, arguments + source)
        let againResult = try JSONDecoder().decode(PullResult.self, from: Data(again.stdout))
        #expect(againResult.bytesTransferred == 0)
        #expect(againResult.secondsToFirstBlobByte == nil, "nothing downloaded, so no first byte")
        // The latency before the first blob byte is reported (the WAN bench divides it by the RTT).
        #expect(cleanResult.secondsToFirstBlobByte.map { $0 > 0 && $0 < 120 } == true, "\(String(describing: cleanResult.secondsToFirstBlobByte))")
        try await proxy.shutdown()
    }

    @Test func badInputIsExitTwoAndMissingTagListsWhatExists() async throws {
        let (registry, _) = try await Self.seededEdition { $0.modules = ["console": ["alpha": "v1.2.0"]] }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let missing = try await Self.pull(registry, into: directory, ["--deckhouse-tag", "v9.9.9"])
        #expect(missing.status == 1)
        #expect(missing.stderrString.contains("v9.9.9"))
        #expect(missing.stderrString.contains("alpha=v1.70.1"))
        let both = try await Self.pull(registry, into: directory, ["-i", "console", "-e", "console"])
        #expect(both.status == 2)
        try "x".write(to: directory.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
        let foreign = try await Self.pull(registry, into: directory, ["--deckhouse-tag", "v1.69.3"])
        #expect(foreign.status == 2)
        #expect(foreign.stderrString.contains("--force"))
        let badConstraint = try await Self.pull(registry, into: directory, ["--force", "-i", "console@>>1"])
        #expect(badConstraint.status == 2)
    }
}

/// `pull --detect`: the tag and edition come from a (fake) cluster API, the image's
/// /deckhouse/edition is read through the registry named in the cluster's secret.
@Suite struct PullDetectTests {
    @Test func detectPullsTheClustersTagAndEdition() async throws {
        let (registry, seeded) = try await PullTests.seededEdition { $0.modules = [:] }
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(registry.host)/deckhouse/ee:v1.68.4"
        objects.registrySecret = ["address": registry.host, "path": "/deckhouse/ee", "scheme": "http",
                                  ".dockerconfigjson": #"{"auths":{}}"#]
        let api = try await FakeKubernetes.start(objects: objects, token: "detect-token-93")
        let home = try TestRegistry.temporaryDirectory("dkp-kube")
        let kubeconfig = home.appendingPathComponent("config")
        try """
        apiVersion: v1
        kind: Config
        current-context: test
        clusters: [{name: c, cluster: {server: "\(api.url)"}}]
        users: [{name: u, user: {token: detect-token-93}}]
        contexts: [{name: test, context: {cluster: c, user: u}}]
        """.write(to: kubeconfig, atomically: true, encoding: .utf8)

        let detect = try await CLITests.run(["detect", "--kubeconfig", kubeconfig.path])
        #expect(detect.status == 0, "\(detect.stderrString)")
        #expect(detect.stdoutString == "TAG=v1.68.4\nEDITION=ee\n")

        // --source names another edition: --detect replaces it with the cluster's.
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await CLITests.run(["pull", directory.path, "--source", "\(registry.host)/deckhouse/ce", "--insecure",
                                             "--detect", "--kubeconfig", kubeconfig.path, "--no-security-db", "--no-installer",
                                             "--json", "--progress", "none"])
        #expect(output.status == 0, "\(output.stderrString)")
        #expect(!(output.stdoutString + output.stderrString).contains("detect-token-93"))
        let platform = try await PullTests.extract([directory.appendingPathComponent("platform.tar")])
        let root = try PullTests.index(platform, "")
        let controller = root.manifests.first { $0.annotations?["io.deckhouse.image.short_tag"] == "v1.68.4" }
        #expect(controller?.digest == seeded.controller["v1.68.4"])
        #expect(controller?.annotations?["org.opencontainers.image.ref.name"] == "\(registry.host)/deckhouse/ee:v1.68.4")
        try await api.shutdown()
    }
}

/// A blob that the registry serves corrupted: the pull stops with both digests named and
/// leaves nothing that looks complete.
@Suite struct PullCorruptionTests {
    @Test func corruptBlobFailsThePullAndNothingLooksFinished() async throws {
        let (registry, seeded) = try await PullTests.seededEdition { $0.modules = [:] }
        // Flip bytes of one platform image's layer inside the registry's own storage.
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        let client = try RegistryClient(host: registry.host, configuration: configuration)
        let digest = try #require(seeded.platformDigests["v1.69.3"]?.last)
        let manifest = try await client.manifest(repository: "deckhouse/ee", reference: digest.string)
        await client.shutdown()
        guard case let .image(image) = manifest.document, let layer = image.layers.first else {
            Issue.record("expected an image manifest"); return
        }
        let data = registry.storageDirectory.appendingPathComponent(
            "docker/registry/v2/blobs/sha256/\(layer.digest.hex.prefix(2))/\(layer.digest.hex)/data")
        var bytes = try Data(contentsOf: data)
        bytes[bytes.count / 2] ^= 0xff
        try bytes.write(to: data)

        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await PullTests.pull(registry, into: directory, ["--deckhouse-tag", "v1.69.3", "--no-security-db", "--no-installer"])
        #expect(output.status == 1)
        #expect(output.stderrString.contains("does not match its digest"))
        #expect(output.stderrString.contains(layer.digest.string))
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(!files.contains("platform.tar") && !files.contains("SHA256SUMS"), "\(files)")
    }
}
