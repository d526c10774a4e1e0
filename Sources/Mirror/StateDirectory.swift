import Bundle
import Foundation

/// `BUNDLE_DIR/.dkp-mirror/`: what a re-run needs to know about tars finished earlier.
/// (Unfinished tars keep their own journal beside their `.partial` files.) d8 ignores it.
struct StateDirectory {
    let bundle: String
    var path: String { bundle + "/.dkp-mirror" }

    private struct Done: Codable {
        var fingerprint: String
        var chunkSize: Int64?
        var files: [String]
    }

    func create() throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// The final files of `tar` when an earlier run finished it with the same plan and they are all still there.
    func completed(tar: String, fingerprint: String, chunkSize: Int64?) -> [String]? {
        guard let data = FileManager.default.contents(atPath: "\(path)/\(tar).done"),
              let done = try? JSONDecoder().decode(Done.self, from: data),
              done.fingerprint == fingerprint, done.chunkSize == chunkSize,
              done.files.allSatisfy({ FileManager.default.fileExists(atPath: bundle + "/" + $0) }) else { return nil }
        return done.files.map { bundle + "/" + $0 }
    }

    /// Forgets every earlier run of these tars: their `.done` records, journals and partial files.
    func discardProgress(tars: [String]) throws {
        let manager = FileManager.default
        try? manager.removeItem(atPath: path)
        let names = (try? manager.contentsOfDirectory(atPath: bundle)) ?? []
        for name in names where tars.contains(where: { name.hasPrefix($0 + ".") })
            && (name.hasSuffix(".journal") || name.hasSuffix(".partial")) {
            try manager.removeItem(atPath: bundle + "/" + name)
        }
    }

    /// Bundle files in the directory that `plan` would not leave as they are: tars (whole, in
    /// chunks, partial or journaled) of names the plan does not write, and finished tars of its
    /// names that no record shows were written by this plan (another pull's, or d8's).
    func filesOfAnotherPull(_ plan: BundlePlan, chunkSize: Int64?) -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: bundle)) ?? []).sorted()
        let planned = Dictionary(plan.tars.map { ($0.name, $0.layout.fingerprint) }, uniquingKeysWith: { a, _ in a })
        return names.filter { name in
            guard let (tar, finished) = BundleIndex.tarName(forBundleFile: name) else { return false }
            guard let fingerprint = planned[tar] else { return true }
            return finished && completed(tar: tar, fingerprint: fingerprint, chunkSize: chunkSize) == nil
        }
    }

    /// Removes every bundle file of the directory but `keeping` (the new bundle's files, which
    /// SHA256SUMS lists), with the old `.gostsum` files and `deckhousereleases.yaml`, and the
    /// records of tars the plan does not write. Returns the names removed.
    func removeOtherPull(keeping: [String], plan: BundlePlan) -> [String] {
        let keep = Set(keeping)
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: bundle)) ?? []).sorted()
        var removed: [String] = []
        for name in names where !keep.contains(name) {
            let stale = BundleIndex.tarName(forBundleFile: name) != nil || name.hasSuffix(".gostsum") || name == "deckhousereleases.yaml"
                || name == DifferentialBundle.fileName
            if stale, (try? FileManager.default.removeItem(atPath: bundle + "/" + name)) != nil { removed.append(name) }
        }
        let planned = Set(plan.tars.map(\.name))
        for record in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        where record.hasSuffix(".done") && !planned.contains(String(record.dropLast(".done".count))) {
            try? FileManager.default.removeItem(atPath: path + "/" + record)
        }
        return removed
    }

    func markCompleted(tar: String, fingerprint: String, chunkSize: Int64?, files: [String]) throws {
        let done = Done(fingerprint: fingerprint, chunkSize: chunkSize, files: files.map { ($0 as NSString).lastPathComponent })
        // Durable before the tar counts as finished: a power cut must not leave a record
        // that is half written, nor one that claims a tar whose rename was lost.
        try AtomicFile.write("\(path)/\(tar).done", Array(try JSONEncoder().encode(done)))
    }
}

