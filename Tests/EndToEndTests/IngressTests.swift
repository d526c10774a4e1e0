import Foundation
import Testing
import TestSupport

/// Push into a registry reached through an Ingress, as the closed site's local registry is
/// (`registry.<PUBLIC_DOMAIN>`): Debian's nginx with TLS and HTTP/2 in front of a TLS registry
/// with a password, configured as ingress-nginx configures it, with request buffering on (its
/// default: nginx takes each whole body into a file before it sends any upstream) and off.
@Suite struct IngressTests {
    /// An Ingress that limits request bodies to 1m (nginx's default, where ingress-nginx's
    /// proxy-body-size annotation is missing): the push answered 413 stops saying what to do,
    /// and with --upload-chunk-size 0.9 it goes through in requests below the limit.
    @Test func aBodyLimitedIngressIsPushedThroughInChunks() async throws {
        let (source, _) = try await PullTests.seededEdition { $0.baseLayerSize = 3 << 20 }
        let bundle = try TestRegistry.temporaryDirectory("dkp-bundle")
        let pulled = try await PullTests.pull(source, into: bundle, ["--deckhouse-tag", "v1.69.3"])
        try #require(pulled.status == 0, "\(pulled.stderrString)")
        let target = try await TestRegistry.start(tls: true, users: ["rw": "chunk-pw-6"])
        let ingress = try await TestIngress.start(upstream: target, bodyLimit: "1m")
        let arguments = ["push", bundle.path, "\(ingress.host)/system/deckhouse", "--ca-file", ingress.caFile,
                         "-u", "rw", "--registry-password-stdin", "--json", "--progress", "none"]
        let refused = try await CLITests.run(arguments, stdin: "chunk-pw-6")
        #expect(refused.status == 1, "\(refused.stderrString)")
        #expect(refused.stderrString.contains("413") && refused.stderrString.contains("--upload-chunk-size"), "\(refused.stderrString)")

        let chunked = try await CLITests.run(arguments + ["--upload-chunk-size", "0.9"], stdin: "chunk-pw-6")
        #expect(chunked.status == 0, "\(chunked.stderrString)\n\(ingress.errors)")
        let patches = ingress.requests.filter { $0.hasPrefix("PATCH ") }
        // Each line: METHOD URI STATUS BYTES-RECEIVED (headers and body).
        #expect(!patches.isEmpty && patches.allSatisfy { $0.split(separator: " ")[2] == "202" && Int($0.split(separator: " ")[3])! < 1 << 20 },
                "\(patches.prefix(5))")
        #expect(try await TargetCheck.expectComplete(target, password: "chunk-pw-6", bundle: bundle, modules: TargetCheck.editionModules) > 40)
        let invalid = try await CLITests.run(arguments + ["--upload-chunk-size", "0"], stdin: "chunk-pw-6")
        #expect(invalid.status == 2 && invalid.stderrString.contains("--upload-chunk-size"), "\(invalid.stderrString)")

        // copy takes the option too, for its destination.
        let before = ingress.requests.count
        let copied = try await CLITests.run(["copy", "\(source.host)/deckhouse/ee:v1.69.3", "\(ingress.host)/copied/deckhouse:v1.69.3",
                                             "--src-insecure", "--dest-ca-file", ingress.caFile, "--dest-login", "rw", "--dest-password-stdin",
                                             "--upload-chunk-size", "0.9", "--json", "--progress", "none"], stdin: "chunk-pw-6")
        #expect(copied.status == 0, "\(copied.stderrString)\n\(ingress.errors)")
        let copyPatches = ingress.requests.dropFirst(before).filter { $0.hasPrefix("PATCH ") }
        #expect(!copyPatches.isEmpty && copyPatches.allSatisfy { $0.split(separator: " ")[2] == "202" && Int($0.split(separator: " ")[3])! < 1 << 20 },
                "\(copyPatches.prefix(5))")
        withExtendedLifetime(source) {}
    }

    @Test(arguments: [true, false])
    func pushThroughTheIngressArrivesWhole(requestBuffering: Bool) async throws {
        // A 24 MiB base layer: bodies of many reads, which nginx buffers into files (or streams).
        let (source, _) = try await PullTests.seededEdition { $0.baseLayerSize = 24 << 20 }
        let bundle = try TestRegistry.temporaryDirectory("dkp-bundle")
        let pulled = try await PullTests.pull(source, into: bundle, ["--deckhouse-tag", "v1.69.3"])
        try #require(pulled.status == 0, "\(pulled.stderrString)")

        let target = try await TestRegistry.start(tls: true, users: ["rw": "ingress-pw-5"])
        let ingress = try await TestIngress.start(upstream: target, requestBuffering: requestBuffering)
        let output = try await CLITests.run(
            ["push", bundle.path, "\(ingress.host)/system/deckhouse", "--ca-file", ingress.caFile,
             "-u", "rw", "--registry-password-stdin", "--json", "--progress", "none", "-j", "8"],
            stdin: "ingress-pw-5")
        #expect(output.status == 0, "\(output.stderrString)\n\(ingress.errors)")
        #expect(!(output.stdoutString + output.stderrString).contains("ingress-pw-5"))
        let result = try JSONDecoder().decode(PushTests.PushResult.self, from: Data(output.stdout))
        #expect(result.failures.isEmpty)
        #expect(result.bytesUploaded > 24 << 20)
        // Through nginx: the uploads and the manifests went by it, and were answered.
        let requests = ingress.requests
        let uploads = requests.filter { $0.hasPrefix("PUT /v2/system/deckhouse") && $0.contains("/blobs/uploads/") }
        #expect(!uploads.isEmpty && uploads.allSatisfy { $0.split(separator: " ")[2] == "201" }, "\(requests.suffix(20))")
        #expect(requests.contains { $0.hasPrefix("PUT /v2/system/deckhouse/manifests/") })
        // Read straight from the registry, not through nginx: every reference with its digest.
        #expect(try await TargetCheck.expectComplete(target, password: "ingress-pw-5", bundle: bundle, modules: TargetCheck.editionModules) > 40)
        // The push's own memory does not follow the bodies nginx holds or streams (debug build:
        // the bench holds the release build to its 64 MB target).
        #expect(result.peakResidentBytes > 0 && result.peakResidentBytes < 150_000_000, "peak RSS \(result.peakResidentBytes)")
        withExtendedLifetime(source) {}
    }

    /// A registry that refuses a manifest HEAD (403) to a user who may push (JFrog, RTFACT-13797):
    /// each manifest is put anyway, as go-containerregistry does for d8, and all of it arrives.
    @Test func aRefusedManifestLookupIsPutAnyway() async throws {
        let (source, _) = try await PullTests.seededEdition()
        let bundle = try TestRegistry.temporaryDirectory("dkp-bundle")
        let pulled = try await PullTests.pull(source, into: bundle, ["--deckhouse-tag", "v1.69.3"])
        try #require(pulled.status == 0, "\(pulled.stderrString)")

        let target = try await TestRegistry.start(tls: true, users: ["rw": "head-refused-8"])
        let ingress = try await TestIngress.start(upstream: target, forbidManifestHead: true)
        let output = try await CLITests.run(
            ["push", bundle.path, "\(ingress.host)/system/deckhouse", "--ca-file", ingress.caFile,
             "-u", "rw", "--registry-password-stdin", "--json", "--progress", "none"],
            stdin: "head-refused-8")
        #expect(output.status == 0, "\(output.stderrString)")
        let result = try JSONDecoder().decode(PushTests.PushResult.self, from: Data(output.stdout))
        #expect(result.failures.isEmpty, "\(result.failures)")
        let requests = ingress.requests
        #expect(requests.contains { $0.hasPrefix("HEAD /v2/system/deckhouse") && $0.contains("/manifests/") && $0.split(separator: " ")[2] == "403" },
                "\(requests.suffix(20))")
        #expect(requests.contains { $0.hasPrefix("PUT /v2/system/deckhouse") && $0.contains("/manifests/") && $0.split(separator: " ")[2] == "201" })
        #expect(try await TargetCheck.expectComplete(target, password: "head-refused-8", bundle: bundle, modules: TargetCheck.editionModules) > 40)
        withExtendedLifetime(source) {}
    }
}
