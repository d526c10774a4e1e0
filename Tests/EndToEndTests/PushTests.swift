import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// `dkp-mirror push` of bundles into a real TLS + htpasswd registry.
@Suite struct PushTests {
    struct PushResult: Decodable {
        var references: Int; var blobs: Int; var blobsUploaded: Int; var blobsMounted: Int; var blobsPresent: Int
        var bytesUploaded: Int64; var failures: [String]; var peakResidentBytes: Int64
    }

    /// A pulled bundle of the synthetic edition (v1.69.3, all parts).
    static func pulledBundle(_ extra: [String] = []) async throws -> (TestRegistry, URL) {
        let (source, _) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await PullTests.pull(source, into: directory, ["--deckhouse-tag", "v1.69.3"] + extra)
        #expect(output.status == 0, "\(output.stderrString)")
        return (source, directory)
    }

    static func push(_ directory: URL, to target: TestRegistry, password: String, _ extra: [String] = []) async throws -> TestProcess.Output {
        try await CLITests.run(["push", directory.path, "\(target.host)/system/deckhouse", "--ca-file", target.caFile!,
                                "-u", "rw", "--registry-password-stdin", "--json", "--progress", "none"] + extra,
                               stdin: password)
    }

    @Test func pushPulledBundleThenPushAgainSendsNothing() async throws {
        let (_, bundle) = try await Self.pulledBundle()
        let target = try await TestRegistry.start(tls: true, users: ["rw": "push-pw-81"])
        let first = try await Self.push(bundle, to: target, password: "push-pw-81")
        #expect(first.status == 0, "\(first.stderrString)")
        let result = try JSONDecoder().decode(PushResult.self, from: Data(first.stdout))
        #expect(result.failures.isEmpty)
        #expect(result.blobsUploaded > 0)
        #expect(result.blobsMounted > 0, "shared blobs are mounted, not uploaded again")
        // One lookup per blob, in the first repository that needs it: once uploaded there, it is
        // mounted into the others without a lookup first.
        let lookups = target.log.split(separator: "\n").filter {
            $0.contains("response completed") && $0.contains("http.request.method=HEAD") && $0.contains("/blobs/sha256:")
        }
        #expect(lookups.count == result.blobs, "\(lookups.count) blob lookups for \(result.blobs) blobs")
        // A manifest one of whose blobs (or children) was just found missing is put without a lookup.
        let manifestLookups = target.log.split(separator: "\n").filter {
            $0.contains("response completed") && $0.contains("http.request.method=HEAD") && $0.contains("/manifests/")
        }
        #expect(manifestLookups.count * 4 < result.references, "\(manifestLookups.count) manifest lookups for \(result.references) references")
        #expect(!(first.stdoutString + first.stderrString).contains("push-pw-81"))
        #expect(try await TargetCheck.expectComplete(target, password: "push-pw-81", bundle: bundle, modules: TargetCheck.editionModules) > 40)

        let second = try await Self.push(bundle, to: target, password: "push-pw-81")
        #expect(second.status == 0, "\(second.stderrString)")
        let again = try JSONDecoder().decode(PushResult.self, from: Data(second.stdout))
        #expect(again.bytesUploaded == 0)
        #expect(again.blobsUploaded == 0)
    }

    @Test func chunkedBundlePushesTheSame() async throws {
        let (_, bundle) = try await Self.pulledBundle(["-c", "0.0003", "--no-modules"])
        let target = try await TestRegistry.start(tls: true, users: ["rw": "pw-chunk"])
        let output = try await Self.push(bundle, to: target, password: "pw-chunk", ["--modules-path-suffix", "/mods"])
        #expect(output.status == 0, "\(output.stderrString)")
        let result = try JSONDecoder().decode(PushResult.self, from: Data(output.stdout))
        #expect(result.failures.isEmpty)
        // v1.69.3: controller + 4 digest images, install, install-standalone, release-channel:v1.69.3 + its 5 channels,
        // install:<5 channels>, 2 VEX = 20; installer, 4 databases = 25; package nginx-tools: 2 versions x (main,
        // version) + 4 digests + 1 extra + 5 channels + 4 VEX = 18 (package-versions.tar's layout is the same, united),
        // and its discovery tag packages:nginx-tools = 44.
        #expect(result.references == 44)
    }

    @Test func corruptBlobIsNotPushedTheRestIs() async throws {
        let (_, bundle) = try await Self.pulledBundle(["--no-modules", "--no-installer"])
        // Flip one byte inside the security databases' largest blob, in the tar itself.
        try BundleDamage.flipByteInLargestEntry(of: bundle.appendingPathComponent("security.tar"))
        let target = try await TestRegistry.start(tls: true, users: ["rw": "pw-corrupt"])
        let output = try await Self.push(bundle, to: target, password: "pw-corrupt")
        #expect(output.status == 1)
        let result = try JSONDecoder().decode(PushResult.self, from: Data(output.stdout))
        #expect(result.failures.count >= 1)
        #expect(output.stderrString.contains("corrupt"))
        #expect(result.references > result.failures.count, "the rest of the bundle is pushed")
    }

    @Test func badTargetsAndCredentials() async throws {
        let (_, bundle) = try await Self.pulledBundle(["--no-modules", "--no-platform"])
        let target = try await TestRegistry.start(tls: true, users: ["rw": "right-pw"])
        let wrong = try await Self.push(bundle, to: target, password: "wrong-pw-33")
        #expect(wrong.status == 1)
        #expect(wrong.stderrString.contains("rejected the credentials of user 'rw'"))
        #expect(!wrong.stderrString.contains("wrong-pw-33"))
        let bare = try await CLITests.run(["push", bundle.path, target.host, "--ca-file", target.caFile!])
        #expect(bare.status == 2)
        let empty = try TestRegistry.temporaryDirectory("dkp-empty")
        let none = try await CLITests.run(["push", empty.path, "\(target.host)/system/deckhouse", "--ca-file", target.caFile!])
        #expect(none.status == 2)
        // Nothing was left in the registry by the write check.
        var configuration = RegistryConfiguration()
        configuration.caFile = target.caFile
        configuration.credential = Credential(username: "rw", password: "right-pw")
        let client = try RegistryClient(host: target.host, configuration: configuration)
        let error = await #expect(throws: RegistryError.self) { _ = try await client.tags(repository: "system/deckhouse") }
        #expect(error != nil)
        await client.shutdown()
    }
}

/// Bundles as older d8 releases wrote them, made in the test from a current bundle (§2):
/// module tars with the layout at the tar root, security.tar with the databases at the root,
/// index.json with the OCI index media type, and the single whole-tree tar.
@Suite struct PushOlderGenerationTests {
    static func gnuTar(_ tar: URL, from folder: URL, _ paths: [String]) async throws {
        let out = try await TestProcess.run("tar", ["--format=gnu", "-cf", tar.path, "-C", folder.path] + paths)
        #expect(out.succeeded, "\(out.stderrString)")
    }

    /// Rewrites every index.json's top-level mediaType to the older OCI index type.
    static func olderIndexMediaType(in folder: URL) throws {
        let enumerator = FileManager.default.enumerator(atPath: folder.path)
        while let path = enumerator?.nextObject() as? String {
            guard (path as NSString).lastPathComponent == "index.json" else { continue }
            let url = folder.appendingPathComponent(path)
            let text = try String(contentsOf: url, encoding: .utf8)
                .replacingOccurrences(of: MediaType.ociLayout.rawValue, with: MediaType.ociIndex.rawValue)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
    }

    @Test func olderModuleAndSecurityTarsAndTheWholeTreeTar() async throws {
        let (_, bundle) = try await PushTests.pulledBundle()
        // Older generation: module-<name>.tar and security.tar rooted at their own layouts.
        let older = try TestRegistry.temporaryDirectory("dkp-older")
        let whole = try TestRegistry.temporaryDirectory("dkp-whole-tree")
        for tar in try FileManager.default.contentsOfDirectory(atPath: bundle.path) where tar.hasSuffix(".tar") {
            let folder = try await PullTests.extract([bundle.appendingPathComponent(tar)])
            try Self.olderIndexMediaType(in: folder)
            // Everything also goes into one tree for the oldest, single-tar generation.
            _ = try await TestProcess.run("cp", ["-a", folder.path + "/.", whole.path])
            if tar.hasPrefix("module-") {
                let name = String(tar.dropFirst("module-".count).dropLast(".tar".count))
                let root = folder.appendingPathComponent("modules/\(name)")
                let entries = try FileManager.default.contentsOfDirectory(atPath: root.path)
                try await Self.gnuTar(older.appendingPathComponent(tar), from: root, entries)
            } else if tar == "security.tar" {
                let root = folder.appendingPathComponent("security")
                try await Self.gnuTar(older.appendingPathComponent(tar), from: root, try FileManager.default.contentsOfDirectory(atPath: root.path))
            } else {
                try await Self.gnuTar(older.appendingPathComponent(tar), from: folder, try FileManager.default.contentsOfDirectory(atPath: folder.path))
            }
        }
        let single = try TestRegistry.temporaryDirectory("dkp-single")
        try await Self.gnuTar(single.appendingPathComponent("d8.tar"), from: whole, try FileManager.default.contentsOfDirectory(atPath: whole.path))

        for (name, directory) in [("older", older), ("single", single)] {
            let target = try await TestRegistry.start(tls: true, users: ["rw": "pw-\(name)"])
            let output = try await PushTests.push(directory, to: target, password: "pw-\(name)")
            #expect(output.status == 0, "\(name): \(output.stderrString)")
            // Checked against the current bundle's index.json files: the same references, the same digests.
            #expect(try await TargetCheck.expectComplete(target, password: "pw-\(name)", bundle: bundle, modules: TargetCheck.editionModules) > 40, "\(name)")
        }
    }
}

@Suite struct PushAccessAndDryRunTests {
    @Test func readOnlyUserIsRefusedBeforeAnyUploadAndDryRunSendsNothing() async throws {
        let (_, bundle) = try await PushTests.pulledBundle()
        let issuer = try await TokenIssuer.start(users: ["ro": "ro-pw-12", "rw": "rw-pw-12"], readOnlyUsers: ["ro"])
        let target = try await TestRegistry.start(tls: true, token: issuer)
        let readOnly = try await CLITests.run(["push", bundle.path, "\(target.host)/system/deckhouse", "--ca-file", target.caFile!,
                                               "-u", "ro", "-p", "ro-pw-12", "--progress", "none"])
        #expect(readOnly.status == 1)
        #expect(readOnly.stderrString.split(separator: "\n").contains { $0.hasPrefix("error: ") })
        #expect(readOnly.stderrString.contains("'ro'"), "\(readOnly.stderrString)")
        // The token service took the password: the message says what the token lacks, not "check the password".
        #expect(readOnly.stderrString.contains("the token service accepted them")
                && readOnly.stderrString.contains("the rights to pull and push on system/deckhouse"), "\(readOnly.stderrString)")
        #expect(!readOnly.stderrString.contains("ro-pw-12"))
        #expect(!readOnly.stderrString.contains("pushing "), "refused before the upload starts")

        let dry = try await CLITests.run(["push", bundle.path, "\(target.host)/system/deckhouse", "--ca-file", target.caFile!,
                                          "-u", "rw", "-p", "rw-pw-12", "--dry-run", "--json", "--modules-path-suffix", "/mods"])
        #expect(dry.status == 0, "\(dry.stderrString)")
        struct DryRun: Decodable { var repositories: [String]; var blobs: Int; var blobsPresent: Int; var bytes: Int64 }
        let plan = try JSONDecoder().decode(DryRun.self, from: Data(dry.stdout))
        #expect(plan.blobsPresent == 0 && plan.blobs > 0 && plan.bytes > 0)
        #expect(plan.repositories.contains("system/deckhouse/mods/console"))
        #expect(plan.repositories.contains("system/deckhouse/mods"), "module discovery tags")
        #expect(plan.repositories.contains("system/deckhouse/release-channel"))
        // An empty suffix is the default, as d8 reads it; "/" is TARGET itself. Packages elsewhere get a note.
        for (suffix, console) in [("", "system/deckhouse/modules/console"), ("/", "system/deckhouse/console")] {
            let other = try await CLITests.run(["push", bundle.path, "\(target.host)/system/deckhouse", "--ca-file", target.caFile!, "-u", "rw",
                                                "-p", "rw-pw-12", "--dry-run", "--json", "--modules-path-suffix", suffix, "--packages-path-suffix", "/pkgs"])
            #expect(other.status == 0, "\(other.stderrString)")
            #expect(try JSONDecoder().decode(DryRun.self, from: Data(other.stdout)).repositories.contains(console), "'\(suffix)'")
            #expect(other.stderrString.contains("note: packages go to \(target.host)/system/deckhouse/pkgs, not to \(target.host)/system/deckhouse/packages"),
                    "\(other.stderrString)")
            #expect(other.stderrString.contains("note: modules go to") == (suffix == "/"), "\(other.stderrString)")
        }

        // Nothing was written by any run.
        var configuration = RegistryConfiguration()
        configuration.caFile = target.caFile
        configuration.credential = Credential(username: "rw", password: "rw-pw-12")
        let client = try RegistryClient(host: target.host, configuration: configuration)
        #expect(try await client.manifestDescriptor(repository: "system/deckhouse", reference: "v1.69.3") == nil)
        await client.shutdown()
    }
}
