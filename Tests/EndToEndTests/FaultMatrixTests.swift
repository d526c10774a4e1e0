import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// Pull, push and copy under injected faults, against real registries behind `HTTPFaultProxy`:
/// 503 and 429 with `Retry-After`, connections cut at random offsets inside blob bodies,
/// stalled responses (the idle timeout must fire), faults that outlast the retries (a clear
/// error, then a re-run completes), and the registry killed and restarted mid-push.
/// Every run ends with every digest checked.
@Suite struct FaultMatrixTests {
    /// A big base layer so that cuts land inside bodies that take several reads.
    static let baseLayerSize: Int64 = 6 << 20

    /// A plain-HTTP registry seeded with the synthetic edition, behind an HTTP fault proxy.
    static func sourceBehindProxy(_ rules: [HTTPFaultProxy.Rule] = []) async throws -> (TestRegistry, HTTPFaultProxy) {
        let (registry, _) = try await PullTests.seededEdition { $0.baseLayerSize = baseLayerSize }
        let proxy = try await HTTPFaultProxy.start(upstream: registry, rules: rules)
        return (registry, proxy)
    }

    /// The idle timeout of a run whose faults are not stalls: long enough that a loaded machine
    /// (the whole suite runs in parallel on two cores) never times out instead of seeing the
    /// fault the test injects. The stall tests pass `stallTimeout` and `stallRetries`: a short
    /// timeout that a loaded machine may also hit spuriously, so those runs get a larger share of
    /// attempts (one budget per operation, see RetryBudget) than the default.
    static let timeout = "15"
    static let stallTimeout = "5"
    // 20: a full suite on two cores (2026-12-02, 379 tests) used up 12 on spurious 3 s timeouts.
    static let stallRetries = ["--retries", "20"]

    static func pull(from proxy: HTTPFaultProxy, into directory: URL, _ extra: [String] = [],
                     timeout: String = timeout) async throws -> TestProcess.Output {
        try await CLITests.run(["pull", directory.path, "--source", "\(proxy.host)/deckhouse/ee", "--insecure",
                                "--deckhouse-tag", "v1.69.3", "--json", "--progress", "none", "--timeout", timeout] + extra)
    }

    /// Offline verify of a pulled bundle: every blob's digest, every tree complete.
    static func expectVerified(_ directory: URL, _ context: String) async throws {
        let verify = try await CLITests.run(["verify", directory.path, "--progress", "none"])
        #expect(verify.status == 0, "\(context): \(verify.stderrString)")
    }

    /// Tars and chunk files in `directory` next to leftovers of an unfinished run.
    static func bundleFiles(_ directory: URL) throws -> (finished: [String], partial: [String]) {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        return (names.filter { $0.hasSuffix(".tar") || $0.range(of: #"\.tar\.\d+$"#, options: .regularExpression) != nil },
                names.filter { $0.hasSuffix(".partial") })
    }

    static func bundleBytes(_ directory: URL) throws -> Int {
        try bundleFiles(directory).finished.reduce(0) { sum, name in
            let attributes = try FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(name).path)
            return sum + ((attributes[.size] as? Int) ?? 0)
        }
    }

    // MARK: pull

    @Test func pullRidesThroughBusyAnswersAndCutBodies() async throws {
        let (registry, proxy) = try await Self.sourceBehindProxy([
            .init(.status(503, retryAfter: "1"), methods: ["GET"], pathContains: "/blobs/", every: 5, limit: 3),
            .init(.status(429, retryAfter: "1"), methods: ["GET", "HEAD"], pathContains: "/manifests/", every: 9, limit: 3),
            .init(.cutResponse(afterBodyBytes: 1...(5 << 20)), methods: ["GET"], pathContains: "/blobs/", every: 3, limit: 6),
        ])
        let directory = try TestRegistry.temporaryDirectory("dkp-fault-pull")
        let output = try await Self.pull(from: proxy, into: directory)
        #expect(output.status == 0, "\(output.stderrString)\n\(proxy.log.joined(separator: "\n"))")
        #expect(proxy.faultsInjected == 12, "\(proxy.log)")
        try await Self.expectVerified(directory, "pull under 503/429/cuts")
        // Cut bodies resume with a Range request: what crossed the wire is about the bundle, not more.
        let bundle = try Self.bundleBytes(directory)
        #expect(proxy.responseBodyBytes <= bundle + bundle / 20, "\(proxy.responseBodyBytes) body bytes for a \(bundle)-byte bundle")
        withExtendedLifetime(registry) {}
    }

    @Test func pullAbandonsAStalledResponseAfterTheIdleTimeout() async throws {
        let (registry, proxy) = try await Self.sourceBehindProxy([
            .init(.stallResponse(afterBodyBytes: (1 << 20)...(3 << 20)), methods: ["GET"], pathContains: "/blobs/", limit: 2),
            .init(.stallResponse(afterBodyBytes: 0...0), methods: ["GET"], pathContains: "/manifests/", every: 4, limit: 1),
        ])
        let directory = try TestRegistry.temporaryDirectory("dkp-fault-stall")
        let started = ContinuousClock.now
        let output = try await Self.pull(from: proxy, into: directory, Self.stallRetries, timeout: Self.stallTimeout)
        let elapsed = ContinuousClock.now - started
        #expect(output.status == 0, "\(output.stderrString)\n\(proxy.log.joined(separator: "\n"))")
        #expect(proxy.faultsInjected == 3)
        #expect(elapsed >= .seconds(5), "the stalls were waited out by the 5 s idle timeout")
        try await Self.expectVerified(directory, "pull after stalls")
        withExtendedLifetime(registry) {}
    }

    @Test func pullThatOutlastsTheRetriesStopsClearlyThenResumes() async throws {
        let (registry, proxy) = try await Self.sourceBehindProxy()
        let directory = try TestRegistry.temporaryDirectory("dkp-fault-persistent")
        // Let the manifests through, then refuse every blob.
        proxy.setRules([.init(.status(503), methods: ["GET"], pathContains: "/blobs/sha256:", every: 1)])
        let failed = try await Self.pull(from: proxy, into: directory, ["--retries", "2"])
        #expect(failed.status == 1, "\(failed.stderrString)")
        let message = failed.stderrString.split(separator: "\n").last { $0.hasPrefix("error: ") }.map(String.init) ?? ""
        #expect(message.hasPrefix("error: ") && message.contains("503") && message.contains(proxy.host), "\(message)")
        let (finished, _) = try Self.bundleFiles(directory)
        #expect(finished.isEmpty, "no tar looks complete after the failure: \(finished)")

        proxy.setRules([])
        let rerun = try await Self.pull(from: proxy, into: directory)
        #expect(rerun.status == 0, "\(rerun.stderrString)")
        #expect(try Self.bundleFiles(directory).partial.isEmpty)
        try await Self.expectVerified(directory, "re-run pull")
        withExtendedLifetime(registry) {}
    }

    // MARK: push

    /// A pulled bundle of the edition (with the big base layer) and an empty plain-HTTP target behind a proxy.
    static func bundleAndTarget(_ rules: [HTTPFaultProxy.Rule] = []) async throws -> (URL, TestRegistry, HTTPFaultProxy) {
        let (source, _) = try await PullTests.seededEdition { $0.baseLayerSize = baseLayerSize }
        let bundle = try TestRegistry.temporaryDirectory("dkp-fault-bundle")
        let pulled = try await PullTests.pull(source, into: bundle, ["--deckhouse-tag", "v1.69.3"])
        #expect(pulled.status == 0, "\(pulled.stderrString)")
        let target = try await TestRegistry.start()
        let proxy = try await HTTPFaultProxy.start(upstream: target, rules: rules)
        return (bundle, target, proxy)
    }

    static func push(_ bundle: URL, to proxy: HTTPFaultProxy, _ extra: [String] = [],
                     timeout: String = timeout) async throws -> TestProcess.Output {
        try await CLITests.run(["push", bundle.path, "\(proxy.host)/system/deckhouse", "--insecure",
                                "--json", "--progress", "none", "--timeout", timeout] + extra)
    }

    @Test func pushRidesThroughBusyAnswersAndCutUploads() async throws {
        let (bundle, target, proxy) = try await Self.bundleAndTarget([
            .init(.status(503, retryAfter: "1"), methods: ["POST"], pathContains: "/blobs/uploads/", every: 6, limit: 3),
            .init(.status(429, retryAfter: "1"), methods: ["PUT"], pathContains: "/manifests/", every: 7, limit: 3),
            .init(.status(503), methods: ["PATCH", "PUT"], pathContains: "/blobs/uploads/", every: 8, limit: 2),
            .init(.cutRequest(afterBodyBytes: 1...(5 << 20)), methods: ["PATCH", "PUT"], pathContains: "/blobs/uploads/", every: 3, limit: 4),
        ])
        let output = try await Self.push(bundle, to: proxy)
        #expect(output.status == 0, "\(output.stderrString)\n\(proxy.log.joined(separator: "\n"))")
        #expect(proxy.faultsInjected == 12, "\(proxy.log)")
        #expect(try await TargetCheck.expectComplete(target, password: nil, bundle: bundle, modules: TargetCheck.editionModules) > 40)
    }

    @Test func pushAbandonsAStalledAnswer() async throws {
        let (bundle, target, proxy) = try await Self.bundleAndTarget([
            .init(.withholdResponse, methods: ["PUT"], pathContains: "/blobs/uploads/", limit: 1),
            .init(.withholdResponse, methods: ["HEAD"], pathContains: "/blobs/", every: 5, limit: 1),
        ])
        let output = try await Self.push(bundle, to: proxy, Self.stallRetries, timeout: Self.stallTimeout)
        #expect(output.status == 0, "\(output.stderrString)\n\(proxy.log.joined(separator: "\n"))")
        #expect(proxy.faultsInjected == 2)
        #expect(try await TargetCheck.expectComplete(target, password: nil, bundle: bundle, modules: TargetCheck.editionModules) > 40)
    }

    /// The registry refuses one repository's blobs by its own rules (400): that repository's
    /// images fail, named, and the push exits 1; everything else goes up.
    @Test func aBlobRefusedInOneRepositoryFailsOnlyItsImages() async throws {
        let refusedRepository = "system/deckhouse/modules/stronghold"
        let (bundle, target, proxy) = try await Self.bundleAndTarget([
            .init(.status(400), methods: ["POST"], pathContains: "/\(refusedRepository)/blobs/uploads/"),
        ])
        let output = try await Self.push(bundle, to: proxy)
        #expect(output.status == 1, "\(output.stderrString)")
        let result = try JSONDecoder().decode(PushTests.PushResult.self, from: Data(output.stdout))
        #expect(!result.failures.isEmpty && result.failures.allSatisfy { $0.contains("stronghold") && $0.contains("400") }, "\(result.failures)")
        let client = try TargetCheck.client(target)
        let references = try await TargetCheck.references(bundle)
        let elsewhere = references.filter { $0.repository != refusedRepository }
        #expect(elsewhere.count < references.count && elsewhere.count > 40)
        for (repository, tag, descriptor) in elsewhere {
            let reference = tag.isEmpty ? descriptor.digest.string : tag
            let found = try? await client.manifestDescriptor(repository: repository, reference: reference)
            #expect(found?.digest == descriptor.digest, "\(repository):\(reference)")
        }
        await client.shutdown()
    }

    @Test func pushThatOutlastsTheRetriesStopsClearlyThenCompletes() async throws {
        let (bundle, target, proxy) = try await Self.bundleAndTarget([
            .init(.status(503), methods: ["PUT"], pathContains: "/manifests/"),
        ])
        let failed = try await Self.push(bundle, to: proxy, ["--retries", "2"])
        #expect(failed.status == 1, "\(failed.stderrString)")
        let message = failed.stderrString.split(separator: "\n").last { $0.hasPrefix("error: ") }.map(String.init) ?? ""
        #expect(message.hasPrefix("error: ") && message.contains("503"), "\(message)")

        proxy.setRules([])
        let rerun = try await Self.push(bundle, to: proxy)
        #expect(rerun.status == 0, "\(rerun.stderrString)")
        let result = try JSONDecoder().decode(PushTests.PushResult.self, from: Data(rerun.stdout))
        #expect(result.blobsUploaded == 0 && result.bytesUploaded == 0, "the blobs of the failed run are not sent again")
        #expect(try await TargetCheck.expectComplete(target, password: nil, bundle: bundle, modules: TargetCheck.editionModules) > 40)
    }

    /// The target registry crashes (SIGKILL) once a few blobs are up and comes back a second
    /// later on the same port and storage: the push rides it out or stops clearly, and then
    /// (a re-run at most) the target holds everything.
    @Test func pushSurvivesTheRegistryRestarting() async throws {
        let (bundle, target, proxy) = try await Self.bundleAndTarget()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLITests.executable)
        process.arguments = ["push", bundle.path, "\(proxy.host)/system/deckhouse", "--insecure",
                             "--progress", "json", "-j", "2", "--timeout", Self.timeout]
        let events = Pipe()
        process.standardOutput = events
        let errors = Pipe()
        process.standardError = errors
        // Slow each blob answer so the crash lands mid-push whatever the machine's speed.
        proxy.setRules([.init(.status(503, retryAfter: "1"), methods: ["POST"], pathContains: "/blobs/uploads/", every: 4)])
        try process.run()
        let reader = events.fileHandleForReading
        // Reading the pipe blocks: on a thread of its own (see Blocking).
        let sawBlobs = try await Blocking.run { () -> Bool in
            var text = ""
            while true {
                let data = reader.availableData
                if data.isEmpty { return false }
                text += String(decoding: data, as: UTF8.self)
                if text.components(separatedBy: "\"event\":\"blob\"").count > 3 { return true }
            }
        }
        #expect(sawBlobs, "the push reported blobs before the crash")
        target.kill()
        try await Task.sleep(for: .seconds(1))
        try await target.restart()
        proxy.setRules([])
        let stderr = try await Blocking.run { () -> String in
            _ = reader.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        }
        if process.terminationStatus != 0 {
            #expect(process.terminationStatus == 1, "\(stderr)")
            #expect(stderr.split(separator: "\n").contains { $0.hasPrefix("error: ") }, "\(stderr)")
            let rerun = try await Self.push(bundle, to: proxy)
            #expect(rerun.status == 0, "\(rerun.stderrString)")
        }
        #expect(try await TargetCheck.expectComplete(target, password: nil, bundle: bundle, modules: TargetCheck.editionModules) > 40)
    }

    // MARK: copy

    @Test func copyRidesThroughFaultsOnBothSides() async throws {
        let (source, sourceProxy) = try await Self.sourceBehindProxy([
            .init(.status(503, retryAfter: "1"), methods: ["GET"], pathContains: "/blobs/", every: 2, limit: 1),
            .init(.cutResponse(afterBodyBytes: 1...(5 << 20)), methods: ["GET"], pathContains: "/blobs/", limit: 2),
            .init(.stallResponse(afterBodyBytes: 0...0), methods: ["GET"], pathContains: "/manifests/", limit: 1),
        ])
        let destination = try await TestRegistry.start()
        let destinationProxy = try await HTTPFaultProxy.start(upstream: destination, rules: [
            .init(.cutRequest(afterBodyBytes: 1...(5 << 20)), methods: ["PATCH", "PUT"], pathContains: "/blobs/uploads/", limit: 1),
            .init(.status(429, retryAfter: "1"), methods: ["PUT"], pathContains: "/manifests/", limit: 1),
        ])
        let output = try await CLITests.run(["copy", "\(sourceProxy.host)/deckhouse/ee:v1.69.3", "\(destinationProxy.host)/mirror/ee:v1.69.3",
                                             "--insecure", "--json", "--progress", "none", "--timeout", Self.stallTimeout] + Self.stallRetries)
        #expect(output.status == 0, "\(output.stderrString)\n\(sourceProxy.log + destinationProxy.log)")
        #expect(sourceProxy.faultsInjected == 4 && destinationProxy.faultsInjected == 2, "\(sourceProxy.log + destinationProxy.log)")

        try await Self.expectCopied(from: source, to: destination)
    }

    /// `deckhouse/ee:v1.69.3` of `source` arrived in `destination` as `mirror/ee:v1.69.3` with
    /// the same digest, and every blob of it is there under its digest (a HEAD answers it).
    static func expectCopied(from source: TestRegistry, to destination: TestRegistry) async throws {
        let from = try TargetCheck.client(source)
        let to = try TargetCheck.client(destination)
        let original = try await from.manifestDescriptor(repository: "deckhouse/ee", reference: "v1.69.3")
        let copied = try await to.manifestDescriptor(repository: "mirror/ee", reference: "v1.69.3")
        #expect(original != nil && copied?.digest == original?.digest)
        if let copied {
            try await TargetCheck.expectWhole(to, repository: "mirror/ee", digest: copied.digest, label: "mirror/ee:v1.69.3")
        }
        await from.shutdown()
        await to.shutdown()
    }

    @Test func copyThatOutlastsTheRetriesStopsClearlyThenCompletes() async throws {
        let (source, sourceProxy) = try await Self.sourceBehindProxy()
        let destination = try await TestRegistry.start()
        let destinationProxy = try await HTTPFaultProxy.start(upstream: destination, rules: [
            .init(.status(503), methods: ["PUT"], pathContains: "/manifests/"),
        ])
        let arguments = ["copy", "\(sourceProxy.host)/deckhouse/ee:v1.69.3", "\(destinationProxy.host)/mirror/ee:v1.69.3",
                         "--insecure", "--json", "--progress", "none", "--timeout", Self.timeout]
        let failed = try await CLITests.run(arguments + ["--retries", "2"])
        #expect(failed.status == 1, "\(failed.stderrString)")
        let message = failed.stderrString.split(separator: "\n").last { $0.hasPrefix("error: ") }.map(String.init) ?? ""
        #expect(message.hasPrefix("error: ") && message.contains("503"), "\(message)")

        destinationProxy.setRules([])
        let sentBefore = destinationProxy.requestBodyBytes
        let rerun = try await CLITests.run(arguments)
        #expect(rerun.status == 0, "\(rerun.stderrString)")
        // The blobs went up in the failed run; the re-run sends the manifest and little else.
        #expect(destinationProxy.requestBodyBytes - sentBefore < 64 << 10, "\(destinationProxy.requestBodyBytes - sentBefore) bytes sent again")

        try await Self.expectCopied(from: source, to: destination)
    }
}
