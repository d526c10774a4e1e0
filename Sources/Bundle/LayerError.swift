import OCI

/// Errors of reading files out of image layers and of building layers.
public enum LayerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// libarchive could not read the layer: not a tar, a corrupt or truncated gzip/zstd
    /// stream, a truncated tar. Carries libarchive's message.
    case malformedLayer(String)
    /// A wanted file is larger than the limit given to the reader.
    case fileTooLarge(path: String, size: Int64, limit: Int)
    /// A wanted path is a hard link whose target was not captured earlier in the layer.
    case unresolvedHardLink(path: String, target: String)
    /// A path given to the layer builder is empty or climbs out of the root (`..`).
    case invalidPath(String)
    /// The layer builder was asked for a compression it cannot write.
    case unsupportedCompression(LayerCompression)
    /// libarchive failed while writing a layer.
    case writeFailed(String)

    public var description: String {
        switch self {
        case .malformedLayer(let message):
            return "malformed image layer: \(message)"
        case .fileTooLarge(let path, let size, let limit):
            return "file \(path) in the image layer is \(size) bytes, more than the limit of \(limit) bytes"
        case .unresolvedHardLink(let path, let target):
            return "file \(path) in the image layer is a hard link to \(target), which was not read"
        case .invalidPath(let path):
            return "invalid path in a layer: \"\(path)\""
        case .unsupportedCompression(let compression):
            return "cannot write a layer with compression \(compression.rawValue)"
        case .writeFailed(let message):
            return "writing a layer failed: \(message)"
        }
    }
}
