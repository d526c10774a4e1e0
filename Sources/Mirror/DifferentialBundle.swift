import Bundle
import Foundation
import OCI

/// A differential bundle (`pull --against FILE`): every manifest, and only the blobs the
/// inventories do not list. What it leaves out is listed in `left-out-blobs.inventory` at the
/// bundle root, in the inventory line format (``Inventory``, source `differential ...`, blob
/// lines only): digest, size, and the repository (a layout path) the inventory named as
/// holding it. d8 cannot push such a bundle (it would miss those blobs); `dkp-mirror push`
/// checks that the target holds them before it pushes anything.
public enum DifferentialBundle {
    /// The file at the bundle root.
    public static let fileName = "left-out-blobs.inventory"

    /// The comment lines of the file (without `# `): a person opening it learns what it is.
    static let commentLines = [
        "dkp-mirror left-out blobs: this bundle is DIFFERENTIAL. Its tars carry every manifest but not the blobs",
        "listed below (blob DIGEST SIZE REPOSITORY, '.' the root repository), which the registry the inventories",
        "were taken of already holds. `d8 mirror push` cannot push this bundle: it would fail on the missing blobs.",
        "Push it with `dkp-mirror push BUNDLE_DIR TARGET` into that registry: it checks first that TARGET holds",
        "every blob listed (in the image's repository, or mountable from the one named) and pushes nothing otherwise.",
        "The last line is the SHA-256 of every byte before it; the file is listed in SHA256SUMS. See the README,",
        "\"Differential bundles\".",
    ]

    /// Reads the bundle's left-out list: nil when the bundle has none (a full bundle).
    /// - Throws: ``MirrorError/invalidInput(_:)`` naming the file and line when it is damaged.
    public static func leftOut(inBundle directory: String) throws -> Inventory? {
        let path = directory + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let inventory: Inventory
        do {
            inventory = try Inventory(contentsOf: path)
        } catch let error as InventoryError {
            let place = error.line.map { "\(error.path) line \($0)" } ?? error.path
            throw MirrorError.invalidInput("\(place): \(error.problem); this differential bundle's list of left-out blobs is "
                + "damaged, so the bundle cannot be checked or pushed: copy the bundle again (SHA256SUMS covers the file), "
                + "or pull it again with --against")
        }
        guard case .differential = inventory.source, inventory.manifests.isEmpty else {
            throw MirrorError.invalidInput("\(path) is an inventory, not a differential bundle's list of left-out blobs "
                + "(its source is '\(inventory.source)', or it lists manifests): remove it from the bundle directory")
        }
        return inventory
    }
}

/// The inventories of `pull --against`, merged: a blob any of them lists is left out.
public struct AgainstInventories: Sendable {
    public var merged: Inventory
    /// `against registry HOST/PATH (created T, sha256 H); ...`: the `source` text of the left-out file.
    public var description: String

    /// Reads and checks every file (an ``InventoryError``, exit code 2, names a damaged one).
    public static func load(_ paths: [String]) throws -> AgainstInventories {
        var builder = InventoryBuilder()
        var named: [String] = []
        for path in paths {
            let bytes: [UInt8]
            do {
                bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                throw InventoryError(path: path, line: nil, problem: "cannot be read (\((error as NSError).localizedDescription))")
            }
            let inventory = try Inventory(parsing: bytes, path: path)
            builder.add(inventory)
            // The reader checked the last line: it is `sha256 <hex>`.
            let last = String(decoding: bytes, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
            named.append("\(inventory.source) (created \(Inventory.timestamp(inventory.created)), \(last))")
        }
        return AgainstInventories(merged: builder.inventory(source: .differential("")),
                                  description: "against " + named.joined(separator: "; "))
    }
}

/// What a differential pull plan leaves out: per blob digest its size and the repository the
/// inventory named, and per tar the digests left out (folded into its fingerprint).
struct LeftOutPlan: Sendable {
    var against: String
    var blobs: [Digest: Inventory.Entry] = [:]
    var byTar: [String: Set<Digest>] = [:]

    var bytes: Int64 { blobs.values.reduce(0) { $0 + $1.size } }

    /// Whether `source`, an entry of tar `tar`, is a blob the inventory holds (with the same
    /// size: a disagreeing size ships the blob); if so it is recorded and left out.
    mutating func leavesOut(_ source: EntrySource, tar: String, inventory: Inventory?) -> Bool {
        guard let inventory, case let .blob(_, descriptor) = source,
              let held = inventory.blobs[descriptor.digest], held.size == descriptor.size else { return false }
        blobs[descriptor.digest] = held
        byTar[tar, default: []].insert(descriptor.digest)
        return true
    }

    /// Goes into a tar's fingerprint: a tar laid out for one left-out set is never resumed for
    /// another. Empty when nothing of the tar is left out, so full pulls keep their fingerprints.
    func fingerprintTag(tar: String) -> String {
        guard let digests = byTar[tar], !digests.isEmpty else { return "" }
        return "\nleft-out " + digests.sorted().map(\.hex).joined(separator: ",")
    }

    /// The bundle's file, or nil when nothing is left out.
    var file: Inventory? {
        guard !blobs.isEmpty else { return nil }
        return Inventory(source: .differential(against), blobs: blobs)
    }
}

extension BundlePlan {
    /// Blobs the plan leaves out (`pull --against`), and their bytes.
    public var leftOutBlobCount: Int { leftOut?.blobs.count ?? 0 }
    public var leftOutBytes: Int64 { leftOut?.bytes ?? 0 }
}

extension BundlePuller {
    /// Writes `left-out-blobs.inventory` atomically when the plan leaves blobs out and returns
    /// its path (SHA256SUMS lists it); otherwise removes one an earlier differential pull left,
    /// since the bundle is now complete and stays d8's format.
    static func writeLeftOut(_ plan: BundlePlan, into directory: String) throws -> [String] {
        let path = directory + "/" + DifferentialBundle.fileName
        guard let file = plan.leftOut?.file else {
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            return []
        }
        try file.write(to: path)
        return [path]
    }
}
