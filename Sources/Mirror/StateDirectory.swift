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

    func markCompleted(tar: String, fingerprint: String, chunkSize: Int64?, files: [String]) throws {
        let done = Done(fingerprint: fingerprint, chunkSize: chunkSize, files: files.map { ($0 as NSString).lastPathComponent })
        let data = try JSONEncoder().encode(done)
        let target = "\(path)/\(tar).done"
        try data.write(to: URL(fileURLWithPath: target + ".tmp"))
        _ = rename(target + ".tmp", target)
    }
}
