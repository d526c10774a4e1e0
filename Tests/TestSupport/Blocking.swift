import Foundation

/// Blocking work of the tests (waiting for a process, polling until one is gone) on threads of
/// its own. Swift concurrency has as many threads as cores (two here) for the whole parallel
/// suite: one test that blocks one of them for seconds stalls every other test's timing, such
/// as a proxy that must answer within a second.
public enum Blocking {
    /// Runs `body` on a new thread and waits for it without holding a concurrency thread.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.name = "test-blocking"
            thread.start()
        }
    }

    /// Runs a teardown (from a `deinit`, which cannot await) on a new thread; the test
    /// process waits for every teardown still running before it exits, so nothing is leaked.
    public static func teardown(_ body: @escaping @Sendable () -> Void) {
        pending.lock()
        if !exitHookInstalled {
            exitHookInstalled = true
            atexit { Blocking.waitForTeardowns() }
        }
        running += 1
        pending.unlock()
        let thread = Thread {
            body()
            pending.lock()
            running -= 1
            pending.broadcast()
            pending.unlock()
        }
        thread.name = "test-teardown"
        thread.start()
    }

    /// Returns once no teardown is running (at most 30 s).
    public static func waitForTeardowns() {
        let deadline = Date().addingTimeInterval(30)
        pending.lock()
        while running > 0 && pending.wait(until: deadline) {}
        pending.unlock()
    }

    private static let pending = NSCondition()
    nonisolated(unsafe) private static var running = 0
    nonisolated(unsafe) private static var exitHookInstalled = false
}
