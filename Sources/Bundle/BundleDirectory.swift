#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Sorts out the files of a bundle directory: the tars (whole or chunked), the known
/// companions that are skipped, leftovers of an unfinished pull, and anything else.
enum BundleDirectory {
    struct Found {
        var tars: [BundleIndex.Tar]
        var ignored: [String]
    }

    /// Files beside the tars that belong to a bundle but are not read.
    static func isCompanion(_ name: String) -> Bool {
        name == "SHA256SUMS" || name == "deckhousereleases.yaml" || name == ".dkp-mirror" || name.hasSuffix(".gostsum")
            || name == "left-out-blobs.inventory"  // a differential bundle's list (Mirror's DifferentialBundle reads it)
    }

    /// The tars of `directory`; with `only`, just the tars of those names (whole or chunked),
    /// each of which must be there, and nothing else of the directory is looked at.
    static func scan(_ directory: String, only: Set<String>? = nil) throws(BundleError) -> Found {
        let directory = absolute(directory)
        var names = try list(directory)
        if let only {
            names = names.filter { name in
                let stem = leftoverStem(name) ?? name
                return only.contains(parseChunk(stem)?.tar ?? stem)
            }
        }
        let sorted = try sort(names, in: directory)
        var tars = [BundleIndex.Tar]()
        for name in Set(sorted.singles.keys).union(sorted.chunks.keys).sorted() {
            tars.append(try sorted.tar(name, in: directory))
        }
        // A tar that a pull started but did not finish: pushing without it would leave its
        // images out silently.
        for (tar, files) in sorted.leftovers.sorted(by: { $0.key < $1.key })
        where sorted.singles[tar] == nil && sorted.chunks[tar] == nil {
            throw .unfinishedTar(directory: directory, tar: tar, leftover: files.sorted()[0])
        }
        if let only {
            for name in only.sorted() where !tars.contains(where: { $0.name == name }) {
                throw .io(path: TarIO.joinPath(directory, name), operation: "open", errno: ENOENT)
            }
        }
        if tars.isEmpty {
            throw .noTars(directory: directory, found: names)
        }
        return Found(tars: tars, ignored: sorted.ignored.sorted())
    }

    /// The directory's files by role.
    struct SortedFiles {
        var singles = [String: (path: String, size: Int64)]()        // tar name -> file
        var chunks = [String: [Int: (path: String, size: Int64)]]()  // tar name -> chunk index -> file
        var chunkDigits = [String: Int]()         // tar name -> digits of its chunk numbers (4, or 5 as some writers use)
        var leftovers = [String: [String]]()      // tar name -> leftover file names
        var ignored = [String]()

        /// The tar `name`, whole or from its chunks, which must run 0000, 0001, ... without a gap.
        func tar(_ name: String, in directory: String) throws(BundleError) -> BundleIndex.Tar {
            if singles[name] != nil && chunks[name] != nil {
                throw .conflictingTarFiles(directory: directory, tar: name)
            }
            var files = [(path: String, size: Int64)]()
            if let file = singles[name] {
                files = [file]
            } else if let byIndex = chunks[name] {
                // The first index that is not there names the missing file (the count of
                // chunks bounds the search).
                for index in 0...byIndex.count {
                    guard let file = byIndex[index] else {
                        if index == byIndex.count { break }
                        let missing = ChunkedFileWriter.chunkPath(TarIO.joinPath(directory, name), index: index, digits: chunkDigits[name] ?? 4)
                        let canonical = ChunkedFileWriter.chunkPath(TarIO.joinPath(directory, name), index: index)
                        let missingName = TarIO.splitPath(missing).name
                        let canonicalName = TarIO.splitPath(canonical).name
                        if let leftover = leftovers[name]?.first(where: { [missingName, canonicalName].contains(leftoverStem($0)) }) {
                            throw .unfinishedTar(directory: directory, tar: name, leftover: leftover)
                        }
                        throw .missingChunk(file: missing)
                    }
                    files.append(file)
                }
            }
            return BundleIndex.Tar(name: name, files: files.map(\.path), fileSizes: files.map(\.size))
        }
    }

    /// The file a leftover of an unfinished pull stood for: dkp-mirror's `.partial` and
    /// `.journal`, d8's `.tmp` (it writes `NAME.tar.tmp` and `NAME.tar.NNNN.chunk.tmp` and renames
    /// them when done, so a `kill -9` or a power cut leaves them); nil for any other file.
    static func leftoverStem(_ name: String) -> String? {
        name.strippingSuffix(".partial") ?? name.strippingSuffix(".journal") ?? name.strippingSuffix(".tmp")
    }

    /// Sorts `names` into whole tars, chunks, leftovers of an unfinished pull and the rest.
    static func sort(_ names: [String], in directory: String) throws(BundleError) -> SortedFiles {
        var sorted = SortedFiles()
        for name in names {
            if isCompanion(name) { continue }
            if let stem = leftoverStem(name) {
                if let tar = parseChunk(stem)?.tar ?? (stem.hasSuffix(".tar") ? stem : nil) {
                    sorted.leftovers[tar, default: []].append(name)
                } else {
                    sorted.ignored.append(name)
                }
                continue
            }
            let path = TarIO.joinPath(directory, name)
            let chunk = parseChunk(name)
            guard chunk != nil || (name.hasSuffix(".tar") && name.count > 4) else {
                sorted.ignored.append(name)
                continue
            }
            var info = stat()
            guard stat(path, &info) == 0 else {
                throw .io(path: path, operation: "examine", errno: errno)
            }
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                sorted.ignored.append(name)
                continue
            }
            let file = (path: path, size: Int64(info.st_size))
            if let chunk {
                if let other = sorted.chunks[chunk.tar]?[chunk.index] {
                    // `platform.tar.0001.chunk` beside `platform.tar.00001.chunk`: which is meant is not known.
                    throw .corrupt(file: path, detail: "it and \(TarIO.splitPath(other.path).name) are both chunk \(chunk.index) "
                        + "of \(chunk.tar); keep the one that belongs to the bundle")
                }
                sorted.chunks[chunk.tar, default: [:]][chunk.index] = file
                sorted.chunkDigits[chunk.tar] = max(sorted.chunkDigits[chunk.tar] ?? 0, chunk.digits)
            } else {
                sorted.singles[name] = file
            }
        }
        return sorted
    }

    /// `(tar name, index, digits)` of a chunk file name `NAME.tar.NNNN.chunk`: four digits as
    /// `ChunkedFileWriter.chunkPath` (and d8) writes them, or more (`NAME.tar.00000.chunk`), the
    /// number read in decimal.
    static func parseChunk(_ name: String) -> (tar: String, index: Int, digits: Int)? {
        guard let stem = name.strippingSuffix(".chunk"), let dot = stem.lastIndex(of: ".") else { return nil }
        let tar = String(stem[..<dot])
        let digits = stem[stem.index(after: dot)...]
        guard tar.hasSuffix(".tar"), tar.count > 4, (4...9).contains(digits.count),
            digits.allSatisfy({ $0.isASCII && $0.isNumber }), let index = Int(digits)
        else { return nil }
        return (tar, index, digits.count)
    }

    /// `directory` as an absolute path without a trailing slash.
    static func absolute(_ directory: String) -> String {
        var path = directory
        if !path.hasPrefix("/") {
            let cwd = FileManager.default.currentDirectoryPath
            path = path.isEmpty || path == "." ? cwd : TarIO.joinPath(cwd, path)
        }
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        return path
    }

    /// The names in `directory` (not "." and ".."), sorted.
    static func list(_ directory: String) throws(BundleError) -> [String] {
        guard let dir = opendir(directory) else {
            throw .io(path: directory, operation: "list the bundle directory", errno: errno)
        }
        defer { closedir(dir) }
        var names = [String]()
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) {
                    String(cString: $0)
                }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}

extension String {
    /// The string without `suffix`, or nil when it does not end with it.
    fileprivate func strippingSuffix(_ suffix: String) -> String? {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : nil
    }
}
