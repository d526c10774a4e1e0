extension BundleImage {
    /// Whether this reference's `refName` sorts before `other`'s, byte by byte (as sorting the
    /// strings would, and as d8 orders index.json), without making either string: index.json
    /// of 20,000 references held 3 MB of ref names only to sort them.
    public func refNamePrecedes(_ other: BundleImage) -> Bool {
        RefNameBytes(self).lexicographicallyPrecedes(RefNameBytes(other))
    }
}

/// The bytes of a `refName` in order: `<host>/<repository>` then `@<digest>` or `:<tag>`.
struct RefNameBytes: Sequence, IteratorProtocol {
    private var host: String.UTF8View.Iterator
    private var repository: String.UTF8View.Iterator
    private var rest: String.UTF8View.Iterator
    private let separator: UInt8
    private var part = 0

    init(_ image: BundleImage) {
        host = image.sourceHost.utf8.makeIterator()
        repository = image.repository.utf8.makeIterator()
        // A digest's ref name carries the reference itself; a tag's, the short tag (the retag
        // or the reference: an existing string either way).
        separator = image.isDigest ? UInt8(ascii: "@") : UInt8(ascii: ":")
        rest = (image.isDigest ? image.reference : image.shortTag).utf8.makeIterator()
    }

    mutating func next() -> UInt8? {
        switch part {
        case 0:
            if let byte = host.next() { return byte }
            part = 1
            return UInt8(ascii: "/")
        case 1:
            if let byte = repository.next() { return byte }
            part = 2
            return separator
        default:
            return rest.next()
        }
    }
}
