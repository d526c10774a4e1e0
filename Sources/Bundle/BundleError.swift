#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors of the bundle on disk. Each message names the file, says what is wrong and what
/// the user can do about it.
public enum BundleError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A system call failed on `path`.
    case io(path: String, operation: String, errno: Int32)
    /// The device holding `path` is full (ENOSPC/EDQUOT). Pull resumes, so freeing space and
    /// re-running loses nothing already written.
    case diskFull(path: String)
    /// `file` is not what it should be (truncated, not a tar, bad journal, ...).
    case corrupt(file: String, detail: String)
    /// A chunk file of a chunked tar is absent.
    case missingChunk(file: String)
    /// The plan behind a partial file is not the plan of this run.
    case planChanged(file: String)
    /// A tar entry name that cannot be written safely.
    case invalidEntryName(name: String, reason: String)
    /// Two entries of one tar with the same name.
    case duplicateEntry(name: String)
    /// An entry index that is not in the layout of `file`.
    case invalidEntryIndex(file: String, index: Int, count: Int)
    /// More bytes were given for an entry than its planned size.
    case entryOverflow(file: String, entry: String, size: Int64, attempted: Int64)
    /// An entry was finished with a size other than the planned one.
    case entrySizeMismatch(file: String, entry: String, expected: Int64, actual: Int64)
    /// A write outside the planned byte range of `file`.
    case outOfRange(file: String, offset: Int64, length: Int64, size: Int64)
    /// Commit was asked for while entries were still missing.
    case incomplete(file: String, missing: Int, firstMissing: String)
    /// The file was already committed; it cannot be written any more.
    case alreadyCommitted(file: String)
    /// A bundle directory with no tar of a bundle in it; `found` lists what it does hold.
    case noTars(directory: String, found: [String])
    /// A tar of the bundle whose pull did not finish: `leftover` (a `.partial` or `.journal`
    /// file) is there, the final tar (or one of its chunks) is not.
    case unfinishedTar(directory: String, tar: String, leftover: String)
    /// A tar that is in the bundle both whole and as chunk files.
    case conflictingTarFiles(directory: String, tar: String)
    /// A directory of a tar that holds `index.json` but no `oci-layout`.
    case missingOCILayout(tar: String, directory: String)
    /// A directory of a tar that holds blobs (or `oci-layout`) but no `index.json`.
    case missingLayoutIndex(tar: String, directory: String)
    /// A tar entry whose name would reach outside the tar's tree (absolute, `..`).
    case unsafeEntryName(tar: String, name: String, reason: String)
    /// Two tars of the bundle hold the layout of the same repository path.
    case duplicateLayout(path: String, tars: [String])
    /// Several tars that cannot be read, each with its own error: all are named at once.
    indirect case severalTars([BundleError])

    public var description: String {
        switch self {
        case let .io(path, operation, code):
            let what = switch code {
            case ENOENT: "; check the path"
            case EACCES, EPERM: "; check that this user may read (and write) it"
            case ENOTDIR: "; a part of the path is a file, not a directory"
            default: ""
            }
            return "cannot \(operation) \(path): \(String(cString: strerror(code))) (errno \(code))\(what)"
        case let .diskFull(path):
            return "no space left on the device holding \(path): free space (or choose another directory) "
                + "and run the command again; it resumes where it stopped"
        case let .corrupt(file, detail):
            return "\(file) is damaged or not what it should be: \(detail); "
                + "copy or pull it again"
        case let .missingChunk(file):
            return "chunk file \(file) is missing: a chunked tar needs all its chunk files side by side; "
                + "copy the missing chunk next to the others"
        case let .planChanged(file):
            return "the interrupted run that left \(file) had a different plan; "
                + "its partial files were discarded and the file is written from the start"
        case let .invalidEntryName(name, reason):
            return "cannot put '\(name)' into a tar: \(reason)"
        case let .duplicateEntry(name):
            return "the tar plan lists '\(name)' twice; each path must appear once"
        case let .invalidEntryIndex(file, index, count):
            return "\(file): entry #\(index) does not exist (the plan has \(count) entries)"
        case let .entryOverflow(file, entry, size, attempted):
            return "\(file): entry '\(entry)' is planned with \(size) bytes but \(attempted) were written; "
                + "the source delivered more data than its descriptor says"
        case let .entrySizeMismatch(file, entry, expected, actual):
            return "\(file): entry '\(entry)' is planned with \(expected) bytes but ended after \(actual); "
                + "the download was cut short or the descriptor is wrong"
        case let .outOfRange(file, offset, length, size):
            return "\(file): write of \(length) bytes at offset \(offset) is outside the planned size \(size)"
        case let .incomplete(file, missing, firstMissing):
            return "\(file) cannot be finished: \(missing) entr\(missing == 1 ? "y is" : "ies are") not written "
                + "yet (first: '\(firstMissing)'); run the command again to fetch them"
        case let .alreadyCommitted(file):
            return "\(file) is already complete and cannot be written any more"
        case let .noTars(directory, found):
            if found.isEmpty {
                return "\(directory) is empty: it holds no bundle; give the directory that pull wrote "
                    + "(platform.tar, module-<name>.tar, security.tar, ... or their .chunk files)"
            }
            let shown = found.prefix(5).joined(separator: ", ") + (found.count > 5 ? ", ..." : "")
            return "\(directory) holds no bundle tar (found: \(shown)); give the directory that pull wrote "
                + "(platform.tar, module-<name>.tar, security.tar, ... or their .chunk files)"
        case let .unfinishedTar(directory, tar, leftover):
            return "\(tar) in \(directory) is not complete: \(leftover) is left from a pull that did not finish; "
                + "run the pull again into this directory (dkp-mirror resumes it; d8 writes that tar again) before pushing"
        case let .conflictingTarFiles(directory, tar):
            return "\(directory) holds both \(tar) and its chunk files (\(tar).0000.chunk, ...): "
                + "they are two copies of one tar, maybe from different pulls; keep one of them"
        case let .missingOCILayout(tar, directory):
            return "\(tar): directory '\(directory.isEmpty ? "/" : directory)' holds index.json but no oci-layout file, "
                + "so it is not a complete OCI image layout; copy or pull \(tar) again"
        case let .missingLayoutIndex(tar, directory):
            return "\(tar): directory '\(directory.isEmpty ? "/" : directory)' holds blobs but no index.json, "
                + "so its images cannot be found; copy or pull \(tar) again"
        case let .unsafeEntryName(tar, name, reason):
            return "\(tar) holds an entry named '\(name)': \(reason); such a tar is refused "
                + "(check where it came from and pull it again)"
        case let .duplicateLayout(path, tars):
            return "the repository '\(path.isEmpty ? "/" : path)' is in more than one tar (\(tars.joined(separator: ", "))): "
                + "the bundle mixes files of different pulls; keep one of them"
        case let .severalTars(errors):
            return "\(errors.count) tars of the bundle cannot be read:\n" + errors.map { "  \($0)" }.joined(separator: "\n")
        }
    }

    /// Maps an errno from a write path: a full disk gets its own, actionable message.
    static func write(path: String, operation: String, errno code: Int32) -> BundleError {
        if code == ENOSPC || code == EDQUOT { return .diskFull(path: path) }
        return .io(path: path, operation: operation, errno: code)
    }
}
