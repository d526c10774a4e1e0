import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// Drives the real `dkp-mirror` executable against real registries.
@Suite struct CLITests {
    static var executable: String {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("dkp-mirror").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return RepoPaths.root.appendingPathComponent(".build/debug/dkp-mirror").path
    }

    /// Runs dkp-mirror with a private HOME (no docker config of the machine leaks in).
    static func run(_ arguments: [String], stdin: String? = nil, environment extra: [String: String] = [:]) async throws -> TestProcess.Output {
        let home = try TestRegistry.temporaryDirectory("dkp-home")
        var environment = ["HOME": home.path, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        environment.merge(extra) { $1 }
        defer { try? FileManager.default.removeItem(at: home) }
        return try await TestProcess.run(executable, arguments, stdin: stdin.map { Array($0.utf8) }, environment: environment)
    }

    static func seed(_ registry: TestRegistry, user: String? = nil, password: String? = nil,
                     _ body: (RegistryClient) async throws -> Void) async throws {
        var configuration = RegistryConfiguration()
        configuration.insecure = !registry.isTLS
        configuration.caFile = registry.caFile
        if let user { configuration.credential = Credential(username: user, password: password ?? "") }
        let client = try RegistryClient(host: registry.host, configuration: configuration)
        do { try await body(client) } catch { await client.shutdown(); throw error }
        await client.shutdown()
    }

    struct CopyResult: Decodable {
        var digest: String, manifests: Int, blobs: Int, blobsSkipped: Int, bytesTransferred: Int64, peakResidentBytes: Int64
    }

    @Test func copyIndexFromPlainToTLSWithPasswordThenInspectAndTags() async throws {
        let source = try await TestRegistry.start()
        let target = try await TestRegistry.start(tls: true, users: ["rw": "copy-secret-31"])
        var images: [SeededImage] = []
        var indexDigest: Digest?
        try await Self.seed(source) { client in
            for i in 0..<2 {
                images.append(try await ImageSeeder.pushImage(client, repository: "deckhouse/ee", tag: "p\(i)", layerSizes: [3 << 20, 4096], seed: UInt64(i + 10)))
            }
            indexDigest = try await ImageSeeder.pushIndex(client, repository: "deckhouse/ee", tag: "v1.69.3", images: images)
        }
        let arguments = ["copy", "\(source.host)/deckhouse/ee:v1.69.3", "\(target.host)/system/deckhouse",
                         "--src-insecure", "--dest-ca-file", target.caFile!, "--dest-login", "rw", "--dest-password-stdin",
                         "--json", "--progress", "plain", "-j", "4"]
        let first = try await Self.run(arguments, stdin: "copy-secret-31\n")
        #expect(first.status == 0, "\(first.stderrString)")
        let result = try JSONDecoder().decode(CopyResult.self, from: Data(first.stdout))
        #expect(result.digest == indexDigest?.string)
        #expect(result.manifests == 3)
        #expect(result.blobs == 6)
        #expect(!(first.stdoutString + first.stderrString).contains("copy-secret-31"))

        // Every manifest and blob arrived with identical digests.
        try await Self.seed(target, user: "rw", password: "copy-secret-31") { client in
            let top = try await client.manifest(repository: "system/deckhouse", reference: "v1.69.3")
            #expect(top.digest == indexDigest)
            for image in images {
                let child = try await client.manifest(repository: "system/deckhouse", reference: image.manifestDigest.string)
                #expect(child.bytes == image.manifestBytes)
                for blob in image.layers + [image.config] {
                    #expect(try await client.blobSize(repository: "system/deckhouse", digest: blob.digest) == blob.size)
                }
            }
        }

        // Again: nothing new to send.
        let second = try await Self.run(arguments, stdin: "copy-secret-31\n")
        #expect(second.status == 0, "\(second.stderrString)")
        let again = try JSONDecoder().decode(CopyResult.self, from: Data(second.stdout))
        #expect(again.blobsSkipped == again.blobs)
        #expect(again.bytesTransferred == 0)

        let inspect = try await Self.run(["inspect", "\(target.host)/system/deckhouse:v1.69.3", "--ca-file", target.caFile!,
                                          "-u", "rw", "-p", "copy-secret-31", "--json"])
        #expect(inspect.status == 0, "\(inspect.stderrString)")
        #expect(inspect.stdoutString.contains(indexDigest!.string))
        #expect(inspect.stdoutString.contains("application/vnd.oci.image.index.v1+json"))

        let raw = try await Self.run(["inspect", "\(source.host)/deckhouse/ee@\(images[0].manifestDigest)", "--insecure", "--raw"])
        #expect(raw.stdout == images[0].manifestBytes)

        let tags = try await Self.run(["tags", "\(target.host)/system/deckhouse", "--ca-file", target.caFile!],
                                      environment: ["D8_MIRROR_REGISTRY_LOGIN": "ignored"])
        #expect(tags.status == 1, "tags without credentials is refused by the registry")
        let tagsWithLogin = try await Self.run(["tags", "\(target.host)/system/deckhouse", "--ca-file", target.caFile!,
                                                "--login", "rw", "--password-stdin"], stdin: "copy-secret-31")
        #expect(tagsWithLogin.stdoutString.split(separator: "\n") == ["v1.69.3"])
    }

    @Test func failuresAreOneClearLineWithTheRightExitCode() async throws {
        let target = try await TestRegistry.start(tls: true, users: ["rw": "right-one-55"])
        let source = try await TestRegistry.start()
        try await Self.seed(source) { _ = try await ImageSeeder.pushImage($0, repository: "a/b", tag: "v1", layerSizes: [100]) }
        let dest = "\(target.host)/system/deckhouse"
        let cases: [(arguments: [String], status: Int32, says: String)] = [
            (["copy", "\(source.host)/a/b:v1", dest, "--src-insecure", "--dest-ca-file", target.caFile!, "--dest-login", "rw", "--dest-password", "wrong-one-66"],
             1, "rejected the credentials of user 'rw'"),
            (["copy", "\(source.host)/a/b:v1", dest, "--src-insecure", "--dest-login", "rw", "--dest-password", "right-one-55"],
             1, "--dest-ca-file"),
            (["copy", "\(source.host)/a/b:nope", dest, "--src-insecure", "--dest-ca-file", target.caFile!], 1, "not found"),
            (["inspect", "registry.nonexistent.invalid/x/y:z"], 1, "does not resolve"),
            (["inspect", "\(source.host)/a/b:v1"], 1, "--insecure"),
            (["inspect", "no-host-here:v1"], 2, "no registry host"),
            (["inspect", "\(source.host)/a/b:v1", "--no-such-flag"], 2, "Unknown option"),
            (["verfy", "/tmp"], 2, "hint: 'verfy' is no command; did you mean 'verify'?"),
            (["copy", "\(source.host)/a/b:v1", dest, "--dest-login", "rw"], 2, "--dest-login is given but no password"),
            (["copy", "\(source.host)/a/b:v1", dest, "--src-insecure", "--dest-insecure"], 1, "hint: drop --dest-insecure"),
            (["tags", "\(source.host)/a/b:v1", "--insecure"], 2, "drop the tag"),
            (["pull", "/tmp/dkp-never-made", "-c=-1"], 2, "must be 0 (no chunks) or a positive number of gigabytes"),
            (["pull", "/tmp/dkp-never-made", "-c", "inf"], 2, "must be 0 (no chunks) or a positive number of gigabytes"),
            (["pull", "/tmp/dkp-never-made", "--license", "k", "--license-stdin"], 2, "pass either --license or --license-stdin"),
            (["inspect", "\(source.host)/a/b:v1", "--ca-file", "/nonexistent.pem"], 2, "/nonexistent.pem"),
        ]
        for c in cases {
            let output = try await Self.run(c.arguments)
            let stderr = output.stderrString
            #expect(output.status == c.status, "\(c.arguments): \(stderr)")
            #expect(stderr.contains(c.says), "\(c.arguments): \(stderr)")
            #expect(stderr.hasPrefix("error: "), "\(c.arguments): \(stderr)")
            #expect(!stderr.contains("wrong-one-66") && !stderr.contains("right-one-55"))
            if c.status == 1 {
                let lines = stderr.split(separator: "\n")
                #expect(lines.count <= 2 && lines.dropFirst().allSatisfy { $0.hasPrefix("hint: ") }, "what failed, what to do: \(stderr)")
            }
        }
        // Credentials that cannot be meant: said before anything is tried, naming where they came from.
        let bundle = try TestRegistry.temporaryDirectory("dkp-cred")
        let inventoryFile = bundle.appendingPathComponent("target.inventory").path
        let envPasswordAlone = try await Self.run(["inventory", "--registry", dest, "--ca-file", target.caFile!, "-o", inventoryFile],
                                                  environment: ["D8_MIRROR_REGISTRY_PASSWORD": "right-one-55"])
        #expect(envPasswordAlone.status == 2 && envPasswordAlone.stderrString.contains("D8_MIRROR_REGISTRY_PASSWORD is set but no login"),
                "\(envPasswordAlone.stderrString)")
        let emptyStdin = try await Self.run(["inventory", "--registry", dest, "--ca-file", target.caFile!, "-o", inventoryFile,
                                             "-u", "rw", "--registry-password-stdin"], stdin: "")
        #expect(emptyStdin.status == 2 && emptyStdin.stderrString.contains("standard input held no password"), "\(emptyStdin.stderrString)")
        let both = try await Self.run(["pull", bundle.path, "--source", "\(source.host)/a", "--insecure", "--license", "k", "--source-login", "u"])
        #expect(both.status == 2 && both.stderrString.contains("--license and --source-login/--source-password"), "\(both.stderrString)")
        for output in [envPasswordAlone, emptyStdin, both] { #expect(!output.stderrString.contains("right-one-55")) }
        // A pull that fails before writing anything leaves no empty bundle directory behind.
        let fresh = bundle.appendingPathComponent("new-bundle")
        let noEdition = try await Self.run(["pull", fresh.path, "--source", "\(source.host)/no/edition", "--insecure", "--progress", "none"])
        #expect(noEdition.status == 1, "\(noEdition.stderrString)")
        #expect(!FileManager.default.fileExists(atPath: fresh.path), "\(noEdition.stderrString)")
    }

    @Test func largeLayerCopyStaysSmallInMemory() async throws {
        let source = try await TestRegistry.start()
        let target = try await TestRegistry.start()
        try await Self.seed(source) { _ = try await ImageSeeder.pushImage($0, repository: "big/img", tag: "v1", layerSizes: [256 << 20, 64 << 20]) }
        let output = try await Self.run(["copy", "\(source.host)/big/img:v1", "\(target.host)/big/img", "--insecure", "--json", "--progress", "none"])
        #expect(output.status == 0, "\(output.stderrString)")
        let result = try JSONDecoder().decode(CopyResult.self, from: Data(output.stdout))
        #expect(result.bytesTransferred >= 320 << 20)
        #expect(result.peakResidentBytes > 0 && result.peakResidentBytes < 150_000_000, "peak RSS \(result.peakResidentBytes)")
    }
}
