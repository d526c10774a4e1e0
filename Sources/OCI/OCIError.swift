/// Errors raised while parsing or validating OCI values.
///
/// Every message is a single line and names the offending input; inputs longer than
/// ``OCIError/displayLimit`` characters are truncated in messages.
public enum OCIError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A digest string that is not `sha256:<64 lowercase hex digits>`.
    case invalidDigest(String, reason: String)
    /// An image reference that is not `HOST[:PORT]/PATH[:TAG][@DIGEST]`.
    case invalidReference(String, reason: String)
    /// A manifest or index body that cannot be read.
    case invalidManifest(reason: String)
    /// A manifest body larger than the accepted limit.
    case manifestTooLarge(size: Int, limit: Int)
    /// A Docker image manifest schema 1 (obsolete, not supported).
    case unsupportedSchema1

    /// Inputs longer than this many characters are truncated in messages.
    public static let displayLimit = 200

    public var description: String {
        switch self {
        case let .invalidDigest(input, reason):
            return "invalid digest '\(Self.display(input))': \(Self.oneLine(reason))"
        case let .invalidReference(input, reason):
            return "invalid reference '\(Self.display(input))': \(Self.oneLine(reason))"
        case let .invalidManifest(reason):
            return "invalid manifest: \(Self.oneLine(reason))"
        case let .manifestTooLarge(size, limit):
            return "manifest is too large: \(size) bytes, the limit is \(limit) bytes"
        case .unsupportedSchema1:
            return "Docker image manifest schema 1 is not supported; "
                + "re-push the image with a current Docker or OCI client so that it is stored as schema 2 or OCI"
        }
    }

    /// Renders an input for a message: control characters escaped (so the message stays on one
    /// line) and truncated to ``displayLimit`` characters.
    static func display(_ input: String, limit: Int = displayLimit) -> String {
        var out = ""
        var count = 0
        for ch in input {
            if count == limit {
                return out + "… (\(input.count) characters)"
            }
            out += escaped(ch)
            count += 1
        }
        return out
    }

    /// Escapes control characters so that the text stays on one line.
    static func oneLine(_ text: String) -> String {
        var out = ""
        for ch in text { out += escaped(ch) }
        return out
    }

    private static func escaped(_ ch: Character) -> String {
        switch ch {
        case "\n": return "\\n"
        case "\r": return "\\r"
        case "\r\n": return "\\r\\n"
        case "\t": return "\\t"
        default:
            if ch.unicodeScalars.contains(where: { $0.properties.generalCategory == .control
                || $0.properties.generalCategory == .lineSeparator
                || $0.properties.generalCategory == .paragraphSeparator }) {
                return ch.unicodeScalars.map { "\\u{\(String($0.value, radix: 16))}" }.joined()
            }
            return String(ch)
        }
    }
}
