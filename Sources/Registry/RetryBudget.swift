import Synchronization

/// The one retry policy: how many attempts one operation may make (`maxAttempts`, the first
/// included), shared by every retry loop inside it. An operation is one request exchange, one
/// blob upload or one blob download; a blob upload's restarts and the retries of each of its
/// requests draw on the same count, so loops never multiply (6 attempts, not 6 x 6). A
/// download that made progress since its last failure starts its count again: a long blob on
/// a flaky link goes on as long as it moves.
final class RetryBudget: Sendable {
    /// The operation's budget, set by the outermost loop for everything it calls.
    @TaskLocal static var current: RetryBudget?

    let attempts: Int
    private let failures = Mutex(0)
    /// The last `Retry-After` a server gave to a request that was not retried on the spot (a
    /// streamed upload): the loop that starts the operation again waits that long.
    private let serverDelay = Mutex<Duration?>(nil)

    init(attempts: Int) {
        self.attempts = max(1, attempts)
    }

    /// Records a failure. Returns the number of this retry (1, 2, ...) when one more attempt
    /// is allowed, nil when the operation has used them all.
    func retry() -> Int? {
        failures.withLock { count in
            guard count + 1 < attempts else { return nil }
            count += 1
            return count
        }
    }

    /// The operation moved forward: its failures so far no longer count.
    func progressed() {
        failures.withLock { $0 = 0 }
    }

    func serverAskedToWait(_ delay: Duration?) {
        guard let delay else { return }
        serverDelay.withLock { $0 = delay }
    }

    /// The wait a server asked for since the last call, if any (then forgotten).
    func takeServerDelay() -> Duration? {
        serverDelay.withLock { delay in
            defer { delay = nil }
            return delay
        }
    }

    /// "retry N of M" for log lines.
    func describe(_ retry: Int) -> String { "\(retry)/\(attempts - 1)" }
}

extension Transport {
    /// An error as a retry's log line names it: what failed, without the hint for the
    /// operator (the retry is already what the hint would say).
    static func brief(_ error: Error) -> String {
        (error as? RegistryError)?.failure ?? "\(error)"
    }

    /// Runs `operation` under the budget of the operation that encloses it, or a new one
    /// (`maxAttempts`) when it is the outermost.
    func withRetryBudget<T>(_ operation: (RetryBudget) async throws -> T) async throws -> T {
        if let budget = RetryBudget.current { return try await operation(budget) }
        let budget = RetryBudget(attempts: configuration.maxAttempts)
        return try await RetryBudget.$current.withValue(budget) { try await operation(budget) }
    }
}
