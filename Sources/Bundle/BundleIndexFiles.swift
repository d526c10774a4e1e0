/// `push --file F` (repeatable): a bundle made of chosen tars, alone or added to a bundle
/// directory's. `F` is a tar (`platform.tar`), one chunk of a chunked tar
/// (`platform.tar.0000.chunk`: the whole chunk set is meant), or the name of a tar that only
/// exists as chunk files (`platform.tar` beside `platform.tar.0000.chunk`, ...).
public enum BundleSelectionError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A file name that is neither `NAME.tar` nor `NAME.tar.NNNN.chunk`.
    case notATar(path: String)
    /// Two different tars of one name (from two directories).
    case sameName(tar: String, first: String, second: String)

    public var description: String {
        switch self {
        case let .notATar(path):
            return "\(path) is not a bundle tar: give NAME.tar or one of its chunk files NAME.tar.NNNN.chunk"
        case let .sameName(tar, first, second):
            return "two different tars are both called \(tar) (\(first) and \(second)); a bundle holds each tar name once: "
                + "pass only one of them"
        }
    }
}

extension BundleIndex {
    /// The tar that the file name `name` stands for: itself for `NAME.tar`, `NAME.tar` for a
    /// chunk file `NAME.tar.NNNN.chunk`; nil for anything else.
    public static func tarName(forFile name: String) -> String? {
        if let chunk = BundleDirectory.parseChunk(name) { return chunk.tar }
        return name.hasSuffix(".tar") && name.count > 4 ? name : nil
    }

    /// The tar a file of a bundle directory belongs to, and whether it is a finished file: a
    /// tar or chunk (true), or a pull's `.partial` or `.journal` of one (false); nil for others.
    public static func tarName(forBundleFile name: String) -> (tar: String, finished: Bool)? {
        for suffix in [".partial", ".journal"] where name.hasSuffix(suffix) {
            return tarName(forFile: String(name.dropLast(suffix.count))).map { ($0, false) }
        }
        return tarName(forFile: name).map { ($0, true) }
    }

    /// The tars of `directory` (when given) together with the tars `files` name, each found
    /// whole or as its complete chunk set; a tar named twice counts once. Layouts that several
    /// of them hold are united as in `open(directory:)`.
    public static func open(directory: String?, files: [String]) throws -> BundleIndex {
        var found = BundleDirectory.Found(tars: [], ignored: [])
        if let directory { found = try BundleDirectory.scan(directory) }
        // The chosen tars by directory, so each directory is listed once.
        var wanted = [String: Set<String>]()
        for file in files {
            let path = BundleDirectory.absolute(file)
            let (folder, name) = TarIO.splitPath(path)
            guard let tar = tarName(forFile: name) else { throw BundleSelectionError.notATar(path: file) }
            wanted[folder.isEmpty ? "/" : folder, default: []].insert(tar)
        }
        for (folder, names) in wanted.sorted(by: { $0.key < $1.key }) {
            let more = try BundleDirectory.scan(folder, only: names)
            for tar in more.tars {
                if let same = found.tars.first(where: { $0.name == tar.name }) {
                    guard same.files == tar.files else {
                        throw BundleSelectionError.sameName(tar: tar.name, first: same.files[0], second: tar.files[0])
                    }
                    continue
                }
                found.tars.append(tar)
            }
        }
        found.tars.sort { $0.name < $1.name }
        return try open(tars: found)
    }
}
