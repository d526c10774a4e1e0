import Bundle
import Foundation
import OCI
import Registry

/// What offline verify makes of a differential bundle: the blobs it left out.
public struct DifferentialSummary: Sendable, Codable {
    /// Blobs `left-out-blobs.inventory` lists, and their bytes.
    public var leftOutBlobs: Int
    public var leftOutBytes: Int64
    /// `differential against ...`: the inventories the pull was cut against.
    public var source: String
}

/// The left-out list of the bundle under verify, and which of its blobs the manifests needed.
final class LeftOutTally {
    enum Outcome { case listed, wrongSize(Int64), notListed }

    let inventory: Inventory?
    /// Why the file could not be read (a problem of the bundle), or nil.
    let loadProblem: String?
    private(set) var used = Set<Digest>()

    init(directory: String) {
        do {
            inventory = try DifferentialBundle.leftOut(inBundle: directory)
            loadProblem = nil
        } catch {
            inventory = nil
            loadProblem = "\(error)"
        }
    }

    var isDifferential: Bool { inventory != nil || loadProblem != nil }

    /// A blob a manifest lists that its layout does not hold.
    func check(_ blob: Descriptor) -> Outcome {
        guard let entry = inventory?.blobs[blob.digest] else { return .notListed }
        guard entry.size == blob.size else { return .wrongSize(entry.size) }
        used.insert(blob.digest)
        return .listed
    }

    /// The message for a blob that is absent: what the left-out list says of it.
    func absentMessage(_ blob: Descriptor, what: String, manifest: Digest) -> String? {
        switch check(blob) {
        case .listed: return nil
        case let .wrongSize(listed):
            return "\(what): blob \(blob.digest) that manifest \(manifest) lists is missing; \(DifferentialBundle.fileName) lists it "
                + "with \(listed) bytes, the manifest says \(blob.size)"
        case .notListed:
            return "\(what): blob \(blob.digest) that manifest \(manifest) lists is missing"
                + (isDifferential ? " (and \(DifferentialBundle.fileName) does not list it as left out)" : "")
        }
    }
}

extension BundleVerifier {
    /// The file's own problems: unreadable, not in SHA256SUMS, a listed blob the bundle carries.
    /// Listed blobs no manifest needs are warnings.
    func differentialProblems(_ tally: LeftOutTally, sums: [String: String]) -> (problems: [VerifyProblem], warnings: [String], summary: DifferentialSummary?) {
        if let problem = tally.loadProblem { return ([VerifyProblem(check: "left-out", message: problem)], [], nil) }
        guard let inventory = tally.inventory else { return ([], [], nil) }
        var problems: [VerifyProblem] = []
        var warnings: [String] = []
        let name = DifferentialBundle.fileName
        if FileManager.default.fileExists(atPath: directory + "/SHA256SUMS"), sums[name] == nil {
            problems.append(VerifyProblem(check: "left-out", message: "\(name) is not listed in SHA256SUMS: it is not of the pull that wrote the bundle; pull the bundle again"))
        }
        for digest in inventory.blobs.keys.sorted() {
            if let copy = bundle.allCopies(digest).first {
                problems.append(VerifyProblem(check: "left-out", message: "\(name) lists blob \(digest) as left out, but \(copy.tar) carries it "
                    + "(\(copy.entry)): the list is not of this bundle; pull the bundle again"))
            } else if !tally.used.contains(digest) {
                warnings.append("\(name) lists blob \(digest) as left out, but no manifest of the bundle needs it")
            }
        }
        return (problems, warnings, DifferentialSummary(leftOutBlobs: inventory.blobs.count, leftOutBytes: inventory.totalBlobBytes,
                                                        source: inventory.source.description))
    }
}

extension RegistryCompleteness {
    /// `verify --registry` of a differential bundle: every left-out blob in each target
    /// repository whose images need it (a blob HEAD); where it is only in the repository the
    /// inventory named, the failure says so (push mounts it from there).
    func leftOutSection(_ plan: PushPlan) async throws -> BundleSection {
        let located = try await BundlePusher.locate(plan.leftOut, client: client, jobs: bundleJobs)
        var failures: [Failure] = []
        var total = 0
        let host = client.host
        for location in located {
            let need = location.need
            let users = need.users.sorted()
            let source = users.prefix(2).joined(separator: ", ") + (users.count > 2 ? " and \(users.count - 2) more" : "")
            for repository in need.repositories {
                total += 1
                guard !location.presentIn.contains(repository) else { continue }
                let url = "\(client.configuration.scheme)://\(host)/v2/\(RegistryClient.escaped(repository))/blobs/\(need.descriptor.digest)"
                let error = location.holderHas || !location.presentIn.isEmpty
                    ? "HEAD \(url): 404 Not Found; the blob is in \(host)/\(location.presentIn.sorted().first ?? need.holderRepository): push mounts it from there"
                    : "HEAD \(url): 404 Not Found, and \(host)/\(need.holderRepository) (where the inventory had it) lacks it too: "
                        + "push of this differential bundle will refuse; bring a full bundle"
                failures.append(Failure(source: source, image: "\(host)/\(repository)@\(need.descriptor.digest) (blob)", error: error))
            }
        }
        return BundleSection(total: total, failures: failures)
    }
}
