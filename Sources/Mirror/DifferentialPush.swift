import BoundedPool
import Bundle
import Foundation
import OCI
import Registry
import Synchronization

/// A blob a differential bundle left out that the push needs: where it must be and who needs it.
struct LeftOutNeed: Sendable {
    var descriptor: Descriptor
    /// The layout path the inventory named as holding it ("" the root).
    var holder: String
    /// That layout path in the target (`BundlePusher.repository(for:)`), set by `plan()`.
    var holderRepository = ""
    /// Target repositories whose images need it, in the order they were planned.
    var repositories: [String] = []
    /// The images that need it (`tar:layout tag`).
    var users: Set<String> = []

    init(descriptor: Descriptor, holder: String) {
        self.descriptor = descriptor
        self.holder = holder
    }

    mutating func add(repository: String, user: String) {
        if !repositories.contains(repository) { repositories.append(repository) }
        users.insert(user)
    }
}

/// Where the target holds a left-out blob: in which of the repositories that need it, and
/// whether the repository the inventory named has it (so it can be mounted from there).
struct LeftOutLocation: Sendable {
    var need: LeftOutNeed
    var presentIn: Set<String>
    var holderHas: Bool
    /// Neither where it is needed nor where the inventory said: the push cannot complete it.
    var missing: Bool { presentIn.isEmpty && !holderHas }
}

/// The left-out blobs as the target holds them (for `push --dry-run` and messages).
public struct LeftOutStatus: Sendable, Codable {
    /// Left-out blobs the pushed images need, and their bytes.
    public var blobs: Int
    public var bytes: Int64
    /// Of those, how many the target lacks altogether.
    public var missing: Int
    /// One line naming how many are missing and which images need them; nil when none is.
    public var missingLine: String?
}

extension BundlePusher {
    /// HEADs every left-out blob in each repository that needs it, and, where one lacks it, in
    /// the repository the inventory named; one pool of `jobs`. Reads only.
    static func locate(_ needs: [LeftOutNeed], client: RegistryClient, jobs: Int) async throws -> [LeftOutLocation] {
        let found = Mutex<[Int: LeftOutLocation]>([:])
        try await forEachConcurrently(Array(needs.enumerated()), limit: jobs) { index, need in
            var present = Set<String>()
            for repository in need.repositories
            where try await client.blobSize(repository: repository, digest: need.descriptor.digest) != nil {
                present.insert(repository)
            }
            var holderHas = present.contains(need.holderRepository)
            if present.count < need.repositories.count, !holderHas {
                holderHas = try await client.blobSize(repository: need.holderRepository, digest: need.descriptor.digest) != nil
            }
            found.withLock { $0[index] = LeftOutLocation(need: need, presentIn: present, holderHas: holderHas) }
        }
        let byIndex = found.withLock { $0 }
        return needs.indices.compactMap { byIndex[$0] }
    }

    /// What `push` would find of the plan's left-out blobs (nothing is written).
    public func leftOutStatus(_ plan: PushPlan) async throws -> LeftOutStatus {
        let located = try await Self.locate(plan.leftOut, client: client, jobs: jobs)
        let missing = located.filter(\.missing)
        return LeftOutStatus(blobs: located.count, bytes: located.reduce(0) { $0 + $1.need.descriptor.size },
                             missing: missing.count, missingLine: missing.isEmpty ? nil : missingLine(missing, of: located.count))
    }

    /// Before anything of a differential bundle is pushed: every left-out blob the images need
    /// must be in the target. Any missing one: one error line, nothing pushed. Otherwise each is
    /// mounted into the repositories that lack it (from one that has it, else from the one the
    /// inventory named). A refused mount fails the images that need that blob, as a corrupt blob does.
    func completeLeftOut(_ plan: PushPlan) async throws -> (failed: [Digest: String], mounted: Int, present: Int) {
        guard !plan.leftOut.isEmpty else { return ([:], 0, 0) }
        let located = try await Self.locate(plan.leftOut, client: client, jobs: jobs)
        let missing = located.filter(\.missing)
        guard missing.isEmpty else { throw MirrorError.failed(missingLine(missing, of: located.count)) }
        let state = Mutex<(failed: [Digest: String], mounted: Int, present: Int)>(([:], 0, 0))
        let client = self.client
        let host = client.host
        try await forEachConcurrently(located, limit: jobs) { location in
            let need = location.need
            let source = need.repositories.first { location.presentIn.contains($0) } ?? need.holderRepository
            state.withLock { $0.present += location.presentIn.count }
            for repository in need.repositories where !location.presentIn.contains(repository) {
                if try await client.mountBlob(repository: repository, digest: need.descriptor.digest, from: source) {
                    state.withLock { $0.mounted += 1 }
                } else {
                    let reason = "blob \(need.descriptor.digest), left out of this differential bundle, is in \(host)/\(source) "
                        + "but the registry refused to mount it into \(host)/\(repository) (cross-repository mounts disabled?); "
                        + "push a full bundle (pull without --against)"
                    state.withLock { $0.failed[need.descriptor.digest] = reason }
                }
            }
        }
        return state.withLock { $0 }
    }

    /// "the target lacks 2 of the 31 blobs ...: needed by a, b, c and 4 more images; nothing was pushed; ...".
    func missingLine(_ missing: [LeftOutLocation], of total: Int) -> String {
        let users = Set(missing.flatMap(\.need.users)).sorted()
        let shown = users.prefix(3).joined(separator: ", ")
        let more = users.count > 3 ? " and \(users.count - 3) more image\(users.count - 3 == 1 ? "" : "s")" : ""
        let bytes = missing.reduce(Int64(0)) { $0 + $1.need.descriptor.size }
        let first = missing[0].need
        let places = Set(first.repositories + [first.holderRepository]).sorted().map { "\(client.host)/\($0)" }
        return "\(target) lacks \(missing.count) of the \(total) blobs this differential bundle left out (\(formatBytes(bytes)); "
            + "e.g. \(first.descriptor.digest), looked for in \(places.joined(separator: " and "))), "
            + "needed by \(shown)\(more); nothing was pushed. Push it into the registry its inventory was taken of "
            + "(see its \(DifferentialBundle.fileName)), or bring a full bundle (pull without --against) or one cut against "
            + "an inventory of this registry taken now (dkp-mirror inventory --registry TARGET)"
    }
}
