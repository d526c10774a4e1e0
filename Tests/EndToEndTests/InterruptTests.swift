import Foundation
import OCI
import Registry
import Testing
import TestSupport
import Synchronization

/// A dkp-mirror started in the background, its output going into files that the test reads
/// while it runs, to be interrupted at a chosen point.
final class BackgroundRun {
    let process = Process()
    let folder: URL
    var stdoutURL: URL { folder.appendingPathComponent("stdout") }
    var stderrURL: URL { folder.appendingPathComponent("stderr") }

    init(_ arguments: [String]) throws {
        folder = try TestRegistry.temporaryDirectory("dkp-run")
        FileManager.default.createFile(atPath: folder.appendingPathComponent("stdout").path, contents: nil)
        FileManager.default.createFile(atPath: folder.appendingPathComponent("stderr").path, contents: nil)
        process.executableURL = URL(fileURLWithPath: CLITests.executable)
        process.arguments = arguments
        // A private HOME: no docker config of the machine leaks in.
        process.environment = ["HOME": folder.path, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: folder)
    }

    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// How many JSON progress events of `kind` (`blob`, `image`, `plan`) the run printed so far.
    func events(_ kind: String) -> Int { stdout.components(separatedBy: "\"event\":\"\(kind)\"").count - 1 }

    /// Waits (polling) until `condition` holds; fails if the process exits first or three minutes
    /// pass (a loaded machine: the whole suite runs in parallel on two cores and fsyncs a lot).
    func wait(until what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(180)
        while !condition() {
            guard process.isRunning else {
                throw TestSupportError("dkp-mirror exited (\(process.terminationStatus)) before \(what): \(stderr)")
            }
            guard ContinuousClock.now < deadline else { throw TestSupportError("timed out waiting for \(what): \(stderr)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Sends `signal`, waits for the process to end and returns how long it took to stop: until
    /// its last write to stderr (the line it prints on its way out), which does not depend on
    /// how soon this busy test process notices the exit.
    func interrupt(_ signal: Int32) async throws -> Duration {
        let sent = ContinuousClock.now
        let sentWall = Date()
        kill(process.processIdentifier, signal)
        while process.isRunning {
            guard ContinuousClock.now - sent < .seconds(30) else {
                kill(process.processIdentifier, SIGKILL)
                throw TestSupportError("dkp-mirror still running 30 s after signal \(signal): \(stderr)")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        let observed = ContinuousClock.now - sent
        guard let written = try? FileManager.default.attributesOfItem(atPath: stderrURL.path)[.modificationDate] as? Date else {
            return observed
        }
        return min(observed, .milliseconds(Int64(max(0, written.timeIntervalSince(sentWall)) * 1000)))
    }
}

/// SIGINT (Ctrl-C) and SIGKILL at several points of pull and push, then the same command
/// again. Every interruption point is reached deterministically: the `FaultProxy` in front of
/// the registry freezes the run there (holding every request from a named one on, or stalling
/// a connection mid-blob), so the signal never races the machine's speed. Then:
///
/// - SIGINT stops the run within 2 s with exit code 130 and one line on stderr saying how to
///   resume (the graceful path, not the forced exit); SIGKILL just kills it;
/// - nothing half-written looks complete (no final name beside a `.partial`, no SHA256SUMS
///   while anything is unfinished; in the registry, no tag whose blobs are missing);
/// - the re-run exits 0 and its result is complete and correct (`verify` passes on the
///   bundle; every reference of the bundle is in the registry with its digest);
/// - the re-run moves what was missing and little more: the tool's own count equals the
///   missing blob bytes exactly, and the bytes on the wire (counted by the proxy) are at least
///   that and at most that plus what a run with nothing to do sends (discovery, manifests,
///   HEADs: measured with one more run afterwards) plus 64 KiB of slack for request headers
///   and discovery's layer reads, which stop at a byte that depends on timing.
@Suite struct InterruptTests {
    static let resumeLine = "interrupted; run the same command again to resume"
    /// What a command that transfers nothing (tags, verify, inventory) says instead.
    static let startOverLine = "interrupted; nothing was written, run the command again to start over"
    static let slack = 64 << 10

    // MARK: pull

    /// The synthetic edition with a 16 MiB base layer (the "big layer") and 256 KiB image
    /// layers, no modules, and a proxy in front of it.
    static func source() async throws -> (TestRegistry, EditionSeeder.Seeded, FaultProxy) {
        let (registry, seeded) = try await PullTests.seededEdition {
            $0.baseLayerSize = 16 << 20
            $0.imageLayerSize = 256 << 10
            $0.modules = [:]
        }
        return (registry, seeded, try await FaultProxy.start(upstream: registry))
    }

    static func pullArguments(_ proxy: FaultProxy, _ directory: URL, jobs: Int) -> [String] {
        ["pull", directory.path, "--source", "\(proxy.host)/deckhouse/ee", "--insecure",
         "--deckhouse-tag", "v1.69.3", "--no-modules", "-j", "\(jobs)"]
    }

    /// Checks how the run ended: SIGINT promptly and gracefully, SIGKILL killed.
    static func checkStopped(_ run: BackgroundRun, by signal: Int32, took: Duration, line: String = resumeLine) {
        if signal == SIGINT {
            print("interrupt: SIGINT stopped the run in \(took)")
            #expect(run.process.terminationReason == .exit)
            #expect(run.process.terminationStatus == 130, "\(run.stderr)")
            #expect(took < .seconds(2), "stopped \(took) after SIGINT")
            let last = run.stderr.split(separator: "\n").last.map(String.init)
            #expect(last == line, "one line saying how to go on, after a graceful stop: \(run.stderr)")
        } else {
            #expect(run.process.terminationReason == .uncaughtSignal)
            #expect(run.process.terminationStatus == signal)
        }
    }

    /// No file with a final name beside its `.partial`, no SHA256SUMS while anything is
    /// unfinished, and every final tar recorded as finished.
    static func checkNothingHalfWrittenLooksComplete(_ directory: URL) throws {
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: directory.path))
        for partial in files where partial.hasSuffix(".partial") {
            #expect(!files.contains(String(partial.dropLast(".partial".count))), "\(partial) beside its final name")
        }
        if files.contains(where: { $0.hasSuffix(".partial") || $0.hasSuffix(".journal") }) {
            #expect(!files.contains("SHA256SUMS"), "SHA256SUMS while tars are unfinished: \(files.sorted())")
        }
        for tar in files where tar.hasSuffix(".tar") {
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent(".dkp-mirror/\(tar).done").path),
                    "\(tar) has its final name but was not recorded as finished")
        }
    }

    /// What the interrupted run left: per tar, the journaled entry indexes, or nil for a tar
    /// recorded as finished.
    static func journals(_ directory: URL) throws -> [String: Set<Int>?] {
        var result: [String: Set<Int>?] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) where name.hasSuffix(".tar.journal") {
            let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            lines.removeLast()  // after the last newline: a torn line, or nothing
            result[String(name.dropLast(".journal".count))] = Set(lines.dropFirst().compactMap { Int($0) })
        }
        let state = directory.appendingPathComponent(".dkp-mirror")
        for name in (try? FileManager.default.contentsOfDirectory(atPath: state.path)) ?? [] where name.hasSuffix(".done") {
            result[String(name.dropLast(".done".count))] = .some(nil)
        }
        return result
    }

    /// Bytes of each unfinished entry already on disk, from the journals' `N:S-E` lines (progress
    /// inside a large blob), per tar and entry index; a later `-N` line forgets them.
    static func journaledRanges(_ directory: URL) throws -> [String: [Int: Int64]] {
        var result: [String: [Int: Int64]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) where name.hasSuffix(".tar.journal") {
            let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            lines.removeLast()
            var ranges: [Int: [Range<Int64>]] = [:]
            for line in lines.dropFirst() {
                if line.hasPrefix("-"), let index = Int(line.dropFirst()) { ranges[index] = nil; continue }
                let parts = line.split(separator: ":")
                guard parts.count == 2, let index = Int(parts[0]) else { continue }
                let bounds = parts[1].split(separator: "-").compactMap { Int64($0) }
                if bounds.count == 2 { ranges[index, default: []].append(bounds[0]..<bounds[1]) }
            }
            result[String(name.dropLast(".journal".count))] = ranges.mapValues { list in
                var covered: Int64 = 0, end: Int64 = 0
                for range in list.sorted(by: { $0.lowerBound < $1.lowerBound }) {
                    let start = max(range.lowerBound, end)
                    if range.upperBound > start { covered += range.upperBound - start; end = range.upperBound }
                }
                return covered
            }
        }
        return result
    }

    /// Digests (hex) of every manifest and index in the extracted layouts of `folder`.
    static func manifestDigests(in folder: URL) throws -> Set<String> {
        var found = Set<String>()
        let enumerator = FileManager.default.enumerator(atPath: folder.path)
        while let path = enumerator?.nextObject() as? String {
            guard (path as NSString).lastPathComponent == "index.json" else { continue }
            let layout = (path as NSString).deletingLastPathComponent
            let blobs = folder.appendingPathComponent(layout).appendingPathComponent("blobs/sha256")
            var queue = try PullTests.index(folder, layout).manifests
            while let descriptor = queue.popLast() {
                guard found.insert(descriptor.digest.hex).inserted else { continue }
                let bytes = try Data(contentsOf: blobs.appendingPathComponent(descriptor.digest.hex))
                if case let .index(index) = try ManifestDocument.parse(Array(bytes), contentType: descriptor.mediaType) {
                    queue += index.manifests
                }
            }
        }
        return found
    }

    /// Bytes of the blobs (configs and layers, not manifests) of the finished bundle that the
    /// interrupted run had not written, from its journals and the tars' entry lists (a
    /// journal's entry N is the tar's N-th member), less the journaled ranges of large blobs.
    static func missingBlobBytes(_ directory: URL, files: [String], journals: [String: Set<Int>?],
                                 ranges: [String: [Int: Int64]] = [:]) async throws -> Int64 {
        var missing: Int64 = 0
        for tar in files where tar.hasSuffix(".tar") {
            if case .some(.none) = journals[tar] { continue }  // finished earlier
            let done = journals[tar].flatMap { $0 } ?? []
            let url = directory.appendingPathComponent(tar)
            let manifests = try manifestDigests(in: try await PullTests.extract([url]))
            let listing = try await TestProcess.run("tar", ["--list", "--verbose", "--numeric-owner", "-f", url.path])
            #expect(listing.succeeded)
            for (index, line) in listing.stdoutString.split(separator: "\n").enumerated() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 6, let size = Int64(fields[2]) else { Issue.record("tar listing: \(line)"); continue }
                let name = String(fields[5...].joined(separator: " "))
                guard name.contains("blobs/sha256/"), !manifests.contains((name as NSString).lastPathComponent),
                      !done.contains(index) else { continue }
                missing += size - (ranges[tar]?[index] ?? 0)
            }
        }
        return missing
    }

    /// The interrupted pull's re-run and the checks every pull scenario shares.
    @discardableResult
    static func resumeAndCheckPull(_ proxy: FaultProxy, _ directory: URL, jobs: Int, label: String) async throws -> Int64 {
        try checkNothingHalfWrittenLooksComplete(directory)
        let journals = try journals(directory)
        let ranges = try journaledRanges(directory)
        proxy.setFault(.none)
        proxy.setClientFault(.none)
        // Bytes the proxy still holds for the killed run's connections are not the re-run's.
        for _ in 0..<500 where proxy.openConnections > 0 { try await Task.sleep(for: .milliseconds(10)) }

        let before = proxy.bytesToClient
        let rerun = try await CLITests.run(pullArguments(proxy, directory, jobs: jobs) + ["--json", "--progress", "none"])
        #expect(rerun.status == 0, "\(rerun.stderrString)")
        let wire = proxy.bytesToClient - before
        let result = try JSONDecoder().decode(PullTests.PullResult.self, from: Data(rerun.stdout))
        try checkNothingHalfWrittenLooksComplete(directory)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(!leftovers.contains { $0.hasSuffix(".partial") || $0.hasSuffix(".journal") }, "\(leftovers)")

        let verify = try await CLITests.run(["verify", directory.path])
        #expect(verify.status == 0, "\(verify.stdoutString) \(verify.stderrString)")

        let missing = try await missingBlobBytes(directory, files: result.files, journals: journals, ranges: ranges)
        #expect(result.bytesTransferred == missing, "the re-run downloads exactly the bytes that were not written")

        // A run with nothing left to do: what discovery and planning cost on the wire.
        let idleBefore = proxy.bytesToClient
        let idle = try await CLITests.run(pullArguments(proxy, directory, jobs: jobs) + ["--json", "--progress", "none"])
        #expect(idle.status == 0, "\(idle.stderrString)")
        let fixed = proxy.bytesToClient - idleBefore
        #expect(try JSONDecoder().decode(PullTests.PullResult.self, from: Data(idle.stdout)).bytesTransferred == 0)

        print("interrupt matrix: pull \(label): missing \(missing) B, re-run \(wire) B on the wire, fixed cost \(fixed) B")
        #expect(wire >= Int(missing))
        #expect(wire <= Int(missing) + fixed + slack, "re-run moved \(wire) B; missing \(missing) B, fixed cost \(fixed) B")
        return missing
    }

    @Test(arguments: [SIGINT, SIGKILL])
    func pullInterruptedWhilePlanning(_ signal: Int32) async throws {
        let (registry, _, proxy) = try await Self.source()
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        // Every request from the fourth manifest fetch on is held: discovery never finishes.
        proxy.clientFault = .holdAt(pattern: "/manifests/", occurrence: 4)
        let run = try BackgroundRun(Self.pullArguments(proxy, directory, jobs: 2) + ["--progress", "json"])
        try await run.wait(until: "the fourth manifest request") { proxy.isHolding }
        Self.checkStopped(run, by: signal, took: try await run.interrupt(signal))
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(!files.contains { $0.hasSuffix(".tar") || $0 == "SHA256SUMS" }, "\(files)")
        try await Self.resumeAndCheckPull(proxy, directory, jobs: 2, label: "early \(signal)")
        try await proxy.shutdown()
        withExtendedLifetime(registry) {}
    }

    /// SIGKILL at this point is `PullTests.killedPullResumesWithoutDownloadingAgain`.
    @Test func pullInterruptedPartwayThroughTheBigLayer() async throws {
        let (registry, _, proxy) = try await Self.source()
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        // A connection stalls after 6 MiB: the one carrying the 16 MiB layer, while the other
        // slot fetches the small blobs.
        proxy.setFault(.stall(afterBytes: 6 << 20))
        let run = try BackgroundRun(Self.pullArguments(proxy, directory, jobs: 2) + ["--progress", "json"])
        try await run.wait(until: "the big layer stalled and three blobs written") {
            proxy.stallsPerformed >= 1 && run.events("blob") >= 3
        }
        Self.checkStopped(run, by: SIGINT, took: try await run.interrupt(SIGINT))
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(files.contains("platform.tar.partial") && !files.contains("platform.tar"), "\(files)")
        try await Self.resumeAndCheckPull(proxy, directory, jobs: 2, label: "middle SIGINT")
        try await proxy.shutdown()
        withExtendedLifetime(registry) {}
    }

    @Test(arguments: [SIGINT, SIGKILL])
    func pullInterruptedWithOnlyTheLastBlobsMissing(_ signal: Int32) async throws {
        let (registry, seeded, proxy) = try await Self.source()
        // One download at a time, largest first: the installer's config is among the last.
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        let client = try RegistryClient(host: registry.host, configuration: configuration)
        let installer = try await client.manifest(repository: "deckhouse/installer", reference: try #require(seeded.installer).string)
        await client.shutdown()
        guard case let .image(image) = installer.document else { Issue.record("installer is not an image"); return }
        proxy.clientFault = .holdAt(pattern: "GET /v2/deckhouse/installer/blobs/\(image.config.digest)", occurrence: 1)

        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let run = try BackgroundRun(Self.pullArguments(proxy, directory, jobs: 1) + ["--progress", "json"])
        try await run.wait(until: "the request for the installer's config") { proxy.isHolding }
        // The plan event carries the number of blobs to download.
        let plan = run.stdout.split(separator: "\n").first { $0.contains("\"event\":\"plan\"") }
        struct PlanEvent: Decodable { var blobs: Int }
        let planned = try JSONDecoder().decode(PlanEvent.self, from: Data(try #require(plan).utf8)).blobs
        let written = run.events("blob")
        #expect(written > planned / 2 && written < planned, "late: \(written) of \(planned) blobs written")
        Self.checkStopped(run, by: signal, took: try await run.interrupt(signal))
        let missing = try await Self.resumeAndCheckPull(proxy, directory, jobs: 1, label: "late \(signal)")
        #expect(missing > 0 && missing < 16 << 10, "late: only configs were left, \(missing) B")
        try await proxy.shutdown()
        withExtendedLifetime(registry) {}
    }

    // MARK: push

    /// A bundle of the edition (16 MiB base layer) pulled straight from a source registry, and
    /// an empty plain-HTTP target behind a proxy (plain, so the proxy can hold named requests).
    static func bundleAndTarget() async throws -> (URL, TestRegistry, FaultProxy) {
        let (source, _) = try await PullTests.seededEdition {
            $0.baseLayerSize = 16 << 20
            $0.imageLayerSize = 256 << 10
            $0.modules = [:]
        }
        let bundle = try TestRegistry.temporaryDirectory("dkp-bundle")
        let pulled = try await PullTests.pull(source, into: bundle, ["--deckhouse-tag", "v1.69.3", "--no-modules"])
        #expect(pulled.status == 0, "\(pulled.stderrString)")
        let target = try await TestRegistry.start()
        return (bundle, target, try await FaultProxy.start(upstream: target))
    }

    static func pushArguments(_ bundle: URL, _ host: String, jobs: Int) -> [String] {
        ["push", bundle.path, "\(host)/system/deckhouse", "--insecure", "-j", "\(jobs)"]
    }

    /// The interrupted push's re-run and the checks every push scenario shares.
    static func resumeAndCheckPush(_ bundle: URL, _ target: TestRegistry, _ proxy: FaultProxy, jobs: Int, label: String) async throws {
        try await TargetCheck.expectComplete(target, bundle: bundle, complete: false)
        // What is missing, as the registry answers HEADs (asked directly, not through the proxy).
        let dry = try await CLITests.run(pushArguments(bundle, target.host, jobs: jobs) + ["--dry-run", "--json"])
        #expect(dry.status == 0, "\(dry.stderrString)")
        struct DryRun: Decodable { var bytes: Int64; var bytesPresent: Int64 }
        let plan = try JSONDecoder().decode(DryRun.self, from: Data(dry.stdout))
        let missing = plan.bytes - plan.bytesPresent

        proxy.setFault(.none)
        proxy.setClientFault(.none)
        let before = proxy.bytesFromClient
        let rerun = try await CLITests.run(pushArguments(bundle, proxy.host, jobs: jobs) + ["--json", "--progress", "none"])
        #expect(rerun.status == 0, "\(rerun.stderrString)")
        let wire = proxy.bytesFromClient - before
        let result = try JSONDecoder().decode(PushTests.PushResult.self, from: Data(rerun.stdout))
        #expect(result.failures.isEmpty)
        #expect(result.bytesUploaded == missing, "the re-run uploads exactly the blobs the registry lacked")
        #expect(try await TargetCheck.expectComplete(target, bundle: bundle, complete: true) > 15)

        // A push with nothing new: HEADs and manifests, what the re-run costs besides blobs.
        let idleBefore = proxy.bytesFromClient
        let idle = try await CLITests.run(pushArguments(bundle, proxy.host, jobs: jobs) + ["--json", "--progress", "none"])
        #expect(idle.status == 0, "\(idle.stderrString)")
        let fixed = proxy.bytesFromClient - idleBefore
        #expect(try JSONDecoder().decode(PushTests.PushResult.self, from: Data(idle.stdout)).bytesUploaded == 0)

        print("interrupt matrix: push \(label): missing \(missing) B, re-run \(wire) B on the wire, fixed cost \(fixed) B")
        #expect(wire >= Int(missing))
        #expect(wire <= Int(missing) + fixed + slack, "re-run sent \(wire) B; missing \(missing) B, fixed cost \(fixed) B")
    }

    @Test(arguments: [SIGINT, SIGKILL])
    func pushInterruptedBeforeTheFirstUpload(_ signal: Int32) async throws {
        let (bundle, target, proxy) = try await Self.bundleAndTarget()
        // The write check goes through; the first blob HEAD, and everything after it, is held.
        proxy.clientFault = .holdAt(pattern: "HEAD /v2/", occurrence: 1)
        let run = try BackgroundRun(Self.pushArguments(bundle, proxy.host, jobs: 1) + ["--progress", "json"])
        try await run.wait(until: "the first blob HEAD") { proxy.isHolding }
        Self.checkStopped(run, by: signal, took: try await run.interrupt(signal))
        #expect(try await TargetCheck.expectComplete(target, bundle: bundle, complete: false) == 0)
        try await Self.resumeAndCheckPush(bundle, target, proxy, jobs: 1, label: "early \(signal)")
        try await proxy.shutdown()
    }

    @Test(arguments: [SIGINT, SIGKILL])
    func pushInterruptedPartwayThroughTheBigLayer(_ signal: Int32) async throws {
        let (bundle, target, proxy) = try await Self.bundleAndTarget()
        // The connection uploading the 16 MiB layer stalls after 6 MiB; the other slot goes on.
        proxy.clientFault = .stall(afterBytes: 6 << 20)
        let run = try BackgroundRun(Self.pushArguments(bundle, proxy.host, jobs: 2) + ["--progress", "json"])
        try await run.wait(until: "the big layer stalled and three blobs pushed") {
            proxy.clientStallsPerformed >= 1 && run.events("blob") >= 3
        }
        Self.checkStopped(run, by: signal, took: try await run.interrupt(signal))
        try await Self.resumeAndCheckPush(bundle, target, proxy, jobs: 2, label: "middle \(signal)")
        try await proxy.shutdown()
    }

    @Test(arguments: [SIGINT, SIGKILL])
    func pushInterruptedWhileTagsAreWritten(_ signal: Int32) async throws {
        let (bundle, target, proxy) = try await Self.bundleAndTarget()
        // Release channels go last: hold from the first of them on.
        proxy.clientFault = .holdAt(pattern: "PUT /v2/system/deckhouse/release-channel/manifests/", occurrence: 1)
        let run = try BackgroundRun(Self.pushArguments(bundle, proxy.host, jobs: 2) + ["--progress", "json"])
        try await run.wait(until: "the first release-channel tag") { proxy.isHolding }
        // Late indeed: every blob is up and the images are tagged, no release channel yet.
        let client = try TargetCheck.client(target)
        #expect(try await client.manifestDescriptor(repository: "system/deckhouse", reference: "v1.69.3") != nil)
        #expect(try await client.manifestDescriptor(repository: "system/deckhouse/release-channel", reference: "alpha") == nil)
        await client.shutdown()
        Self.checkStopped(run, by: signal, took: try await run.interrupt(signal))
        try await Self.resumeAndCheckPush(bundle, target, proxy, jobs: 2, label: "late \(signal)")
        try await proxy.shutdown()
    }

    /// A push killed halfway (SIGKILL once a few blobs are up, read from its JSON progress
    /// events) completes on re-run, and the re-run does not send those blobs again. The target
    /// (TLS + htpasswd) sits behind a proxy that delays every response by 100 ms: each blob
    /// takes several round trips, so the ~20 blobs left after the third take seconds, and
    /// request traffic is stalled before the kill, so the push cannot finish first however
    /// fast the machine.
    @Test func killedPushCompletesOnRerun() async throws {
        let (_, bundle) = try await PushTests.pulledBundle(["--no-modules"])
        let target = try await TestRegistry.start(tls: true, users: ["rw": "pw-kill"])
        let proxy = try await FaultProxy.start(upstream: target, latency: .milliseconds(100))
        let run = try BackgroundRun(["push", bundle.path, "\(proxy.host)/system/deckhouse", "--ca-file", try #require(target.caFile),
                                     "-u", "rw", "-p", "pw-kill", "--progress", "json", "-j", "1"])
        try await run.wait(until: "three blobs pushed") { run.events("blob") >= 3 }
        proxy.clientFault = .stall(afterBytes: 0)
        _ = try await run.interrupt(SIGKILL)
        #expect(run.process.terminationReason == .uncaughtSignal, "killed mid-push: \(run.stderr)")
        #expect(run.events("blob") >= 3)

        let rerun = try await PushTests.push(bundle, to: target, password: "pw-kill")
        #expect(rerun.status == 0, "\(rerun.stderrString)")
        let result = try JSONDecoder().decode(PushTests.PushResult.self, from: Data(rerun.stdout))
        #expect(result.blobsPresent > 0, "blobs of the killed run are not sent again")
        #expect(try await TargetCheck.expectComplete(target, password: "pw-kill", bundle: bundle) > 15)
        try await proxy.shutdown()
    }
}


@Suite struct InterruptWhileAuthenticatingTests {
    final class PortBox: Sendable { let port = Mutex(0) }

    /// Ctrl-C while the token service holds its answer: the token fetch (a task shared by the
    /// requests that wait for the token) is cancelled with the rest of the run, so it stops
    /// gracefully rather than by the forced exit after the grace period.
    @Test func ctrlCDuringAHungTokenFetchStopsGracefully() async throws {
        let realm = PortBox()
        let registry = try await TestHTTPServer.start { _ in
            let port = realm.port.withLock { $0 }
            return TestHTTPResponse(status: 401, headers: [("WWW-Authenticate", #"Bearer realm="http://127.0.0.1:\#(port)/token",service="test""#)])
        }
        // The token service: a proxy that never passes a byte of the answer back.
        let tokenService = try await FaultProxy.start(upstreamPort: registry.port, fault: .stall(afterBytes: 0))
        realm.port.withLock { $0 = tokenService.port }

        let run = try BackgroundRun(["tags", "127.0.0.1:\(registry.port)/deckhouse/ee", "--insecure", "-u", "user", "-p", "pw-hung-4410"])
        try await run.wait(until: "the token request is in flight") { tokenService.stallsPerformed >= 1 }
        InterruptTests.checkStopped(run, by: SIGINT, took: try await run.interrupt(SIGINT), line: InterruptTests.startOverLine)
        #expect(!run.stderr.contains("pw-hung-4410"))
    }
}
