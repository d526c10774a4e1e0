import OCI

public enum StreamsError: Error, CustomStringConvertible, Equatable, Sendable {
    case digestMismatch(expected: Digest, actual: Digest)
    case sizeMismatch(digest: Digest, expected: Int64, actual: Int64)
    case io(path: String, operation: String, errno: Int32)
    /// A file shorter than the range asked of it (it shrank, or the range is wrong).
    case fileEndedEarly(path: String, offset: Int64)

    public var description: String {
        switch self {
        case let .digestMismatch(expected, actual):
            return "content does not match its digest: expected \(expected), got \(actual)"
        case let .sizeMismatch(digest, expected, actual):
            return "blob \(digest) has the wrong size: expected \(expected) bytes, got \(actual) or more"
        case let .io(path, operation, code):
            return "cannot \(operation) \(path): \(String(cString: strerror(code)))"
        case let .fileEndedEarly(path, offset):
            return "\(path) ends at \(offset) bytes, before the range read from it"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
