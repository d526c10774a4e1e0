import Foundation
import OCI
import Testing
import TestSupport

/// `dkp-mirror verify --deep`: layers decompressed (gzip, zstd) and checked against the
/// image config's rootfs.diff_ids, on small hand-built bundles with real layers.
@Suite struct VerifyDeepTests {
    struct Report: Decodable {
        struct Deep: Decodable {
            var layers: Int
            var plainLayers: Int
            var skipped: Int
            var compressedBytes: Int64
            var uncompressedBytes: Int64
        }
        struct Problem: Decodable {
            var check: String
            var message: String
        }
        var deep: Deep?
        var problems: [Problem]
    }

    /// A bundle directory holding `module-deep.tar`: the layout at the tar root, as older d8
    /// wrote module tars (verify relocates it to modules/deep).
    static func bundle(_ images: [DeepLayerSeeder.Image]) async throws -> URL {
        let tree = try TestRegistry.temporaryDirectory("dkp-deep-tree")
        try DeepLayerSeeder.writeLayout(images, at: tree, reference: "registry.example/deckhouse/ee/modules/deep")
        let bundle = try TestRegistry.temporaryDirectory("dkp-deep")
        let out = try await TestProcess.run("tar", ["--format=gnu", "-cf", bundle.appendingPathComponent("module-deep.tar").path,
                                                    "-C", tree.path, "oci-layout", "index.json", "blobs"])
        #expect(out.succeeded, "\(out.stderrString)")
        return bundle
    }

    static func files(_ seed: UInt8, count: Int = 3) -> [(path: String, contents: [UInt8])] {
        (0..<count).map { i in
            // Compressible but not trivial: a repeating pattern with the seed and index in it.
            ("usr/share/deep/\(seed)-\(i).txt", Array(String(repeating: "layer \(seed) file \(i) line\n", count: 2000 + i * 37).utf8))
        }
    }

    @Test func realGzipZstdAndPlainLayersPassAndArtifactsAreSkipped() async throws {
        let gzip = try DeepLayerSeeder.Layer.real(Self.files(1), compression: .gzip)
        let zstd = try DeepLayerSeeder.Layer.real(Self.files(2), compression: .zstd)
        let plain = try DeepLayerSeeder.Layer.real(Self.files(3), compression: .none)
        var docker = try DeepLayerSeeder.Layer.real(Self.files(4), compression: .gzip)
        docker.mediaType = .dockerLayerGzip
        let trivy = DeepLayerSeeder.Layer(bytes: TestCrypto.randomBytes(4096),
                                          mediaType: MediaType(rawValue: "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"),
                                          diffID: try Digest(parsing: "sha256:" + String(repeating: "0", count: 64)))
        let bundle = try await Self.bundle([
            .init(tag: "mixed", layers: [gzip, zstd, plain]),
            // Shares the plain and gzip layers: each is counted once.
            .init(tag: "shared", layers: [plain, gzip]),
            .init(tag: "docker", layers: [docker], configType: .dockerConfig),
            .init(tag: "trivy", layers: [trivy], configType: MediaType(rawValue: "application/vnd.aquasec.trivy.config.v1+json")),
        ])
        let run = try await CLITests.run(["verify", bundle.path, "--deep", "--json"])
        #expect(run.status == 0, "\(run.stdoutString) \(run.stderrString)")
        let report = try JSONDecoder().decode(Report.self, from: Data(run.stdout))
        #expect(report.problems.isEmpty)
        let deep = try #require(report.deep)
        #expect(deep.layers == 4, "gzip, zstd and docker gzip decompressed, the plain tar compared by digest")
        #expect(deep.plainLayers == 1)
        #expect(deep.skipped == 1, "the trivy database layer")
        #expect(deep.uncompressedBytes > deep.compressedBytes)

        let text = try await CLITests.run(["verify", bundle.path, "--deep"])
        #expect(text.status == 0)
        #expect(text.stdoutString.contains("bundle OK"))
        #expect(text.stdoutString.contains("; 1 plain tar by its digest)"), "\(text.stdoutString)")
        #expect(text.stdoutString.contains("--deep: 4 layers checked against their diff_ids (3 decompressed, "), "\(text.stdoutString)")

        // Without --deep the report carries no deep section.
        let plainRun = try await CLITests.run(["verify", bundle.path, "--json"])
        #expect(plainRun.status == 0)
        #expect(try JSONDecoder().decode(Report.self, from: Data(plainRun.stdout)).deep == nil)

        // --deep is an offline check.
        let usage = try await CLITests.run(["verify", bundle.path, "--deep", "--registry", "127.0.0.1:1/system/deckhouse"])
        #expect(usage.status == 2)
        #expect(usage.stderrString.contains("--deep"), "\(usage.stderrString)")
    }

    @Test func wrongDiffIDsDamagedStreamsAndMislabelledLayersAreNamed() async throws {
        let gzip = try DeepLayerSeeder.Layer.real(Self.files(5), compression: .gzip)
        let zstd = try DeepLayerSeeder.Layer.real(Self.files(6), compression: .zstd)
        let wrong = "sha256:" + String(repeating: "e", count: 64)
        // A gzip stream cut in half: its blob digest is of the cut bytes, so only --deep sees it.
        let whole = try DeepLayerSeeder.Layer.real(Self.files(7, count: 6).map { ($0.path, TestCrypto.randomBytes(48 << 10)) }, compression: .gzip)
        let cut = DeepLayerSeeder.Layer(bytes: Array(whole.bytes.prefix(whole.bytes.count / 2)), mediaType: .ociLayerGzip, diffID: whole.diffID)
        // gzip bytes labelled zstd.
        var mislabelled = try DeepLayerSeeder.Layer.real(Self.files(8), compression: .gzip)
        mislabelled.mediaType = .ociLayerZstd
        let extra = try DeepLayerSeeder.Layer.real(Self.files(9), compression: .zstd)

        let bundle = try await Self.bundle([
            .init(tag: "wrong", layers: [gzip, zstd], diffIDs: [gzip.diffID.string, wrong]),
            .init(tag: "cut", layers: [cut]),
            .init(tag: "mislabelled", layers: [mislabelled]),
            .init(tag: "count", layers: [extra, gzip], diffIDs: [extra.diffID.string]),
        ])
        // Offline checks without --deep find nothing: every blob hashes to its name.
        let shallow = try await CLITests.run(["verify", bundle.path])
        #expect(shallow.status == 0, "\(shallow.stdoutString) \(shallow.stderrString)")

        let run = try await CLITests.run(["verify", bundle.path, "--deep", "--json"])
        #expect(run.status == 1, "\(run.stdoutString) \(run.stderrString)")
        let report = try JSONDecoder().decode(Report.self, from: Data(run.stdout))
        let messages = report.problems.map(\.message)
        #expect(report.problems.allSatisfy { $0.check == "diff_id" }, "\(messages)")
        #expect(report.problems.count == 4, "\(messages)")
        let reference = "registry.example/deckhouse/ee/modules/deep"
        // The wrong diff_id: image reference, layer digest, expected and actual.
        #expect(messages.contains {
            $0.contains("\(reference):wrong") && $0.contains("layer \(zstd.digest)") && $0.contains("decompresses to diff_id \(zstd.diffID)")
                && $0.contains("config lists \(wrong)")
        }, "\(messages)")
        #expect(messages.contains { $0.contains("\(reference):cut") && $0.contains("layer \(cut.digest) (gzip)") && $0.contains("cannot be decompressed") },
                "\(messages)")
        #expect(messages.contains { $0.contains("\(reference):mislabelled") && $0.contains("its media type says zstd but its bytes are not zstd data") },
                "\(messages)")
        #expect(messages.contains { $0.contains("\(reference):count") && $0.contains("lists 1 rootfs.diff_ids for 2 layers") }, "\(messages)")
        // The layer right in one image and listed in another is not blamed.
        #expect(!messages.contains { $0.contains("layer \(gzip.digest)") }, "\(messages)")

        let text = try await CLITests.run(["verify", bundle.path, "--deep"])
        #expect(text.status == 1)
        #expect(text.stdoutString.contains("bundle has 4 problem(s)"), "\(text.stdoutString)")
    }

    /// The synthetic edition's layers are random bytes labelled gzip and its configs list no
    /// diff_ids: --deep says so per layer and per config, once each, and still exits normally.
    @Test func syntheticEditionIsReportedSensibly() async throws {
        let (_, bundle) = try await PushTests.pulledBundle(["--no-modules"])
        let run = try await CLITests.run(["verify", bundle.path, "--deep", "--json"])
        #expect(run.status == 1, "\(run.stderrString)")
        let report = try JSONDecoder().decode(Report.self, from: Data(run.stdout))
        let messages = report.problems.map(\.message)
        #expect(report.problems.allSatisfy { $0.check == "diff_id" }, "\(messages)")
        #expect(messages.contains { $0.contains("its media type says gzip but its bytes are not gzip data") }, "\(messages)")
        #expect(messages.contains { $0.contains("lists 0 rootfs.diff_ids for") }, "\(messages)")
        #expect(Set(messages).count == messages.count, "each problem once")
        // The security databases are artifacts: skipped, never reported.
        #expect(!messages.contains { $0.hasPrefix("security.tar") }, "\(messages)")
        #expect((report.deep?.skipped ?? 0) >= 4)
    }
}
