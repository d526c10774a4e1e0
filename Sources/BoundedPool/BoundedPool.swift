/// The program's one bounded pool, used by discovery, planning, pull, push, copy, verify and
/// the completeness check: `body` runs for every element with at most `limit` at once, and
/// each result is handed to `collect` on the caller's task as it arrives (so the caller needs
/// no lock). The first error cancels the rest and is rethrown.
public func forEachConcurrently<Element: Sendable, Result: Sendable>(
    _ elements: [Element], limit: Int,
    _ body: @escaping @Sendable (Element) async throws -> Result,
    collect: (Result) throws -> Void
) async throws {
    try await withThrowingTaskGroup(of: Result.self) { group in
        var iterator = elements.makeIterator()
        for _ in 0..<max(1, limit) {
            guard let element = iterator.next() else { break }
            group.addTask { try await body(element) }
        }
        while let result = try await group.next() {
            try collect(result)
            if let element = iterator.next() {
                group.addTask { try await body(element) }
            }
        }
    }
}

/// `body` for every element, at most `limit` at once.
public func forEachConcurrently<Element: Sendable>(
    _ elements: [Element], limit: Int,
    _ body: @escaping @Sendable (Element) async throws -> Void
) async throws {
    try await forEachConcurrently(elements, limit: limit, body, collect: { _ in })
}

/// `body` over `items`, at most `limit` at once, the results in the items' order.
public func concurrentMap<T: Sendable, R: Sendable>(
    _ items: [T], limit: Int,
    _ body: @escaping @Sendable (T) async throws -> R
) async throws -> [R] {
    var results = [R?](repeating: nil, count: items.count)
    try await forEachConcurrently(Array(items.enumerated()), limit: limit, { (index, item) in (index, try await body(item)) },
                                  collect: { (index, result) in results[index] = result })
    return results.compactMap { $0 }
}
