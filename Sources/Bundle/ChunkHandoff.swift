import Foundation

/// A bounded queue of chunks: the producer side is async (it suspends, never blocks, when the
/// queue is full); the consumer side is a plain thread that blocks on a condition variable.
final class ChunkHandoff: @unchecked Sendable {
    enum Take {
        case chunk([UInt8])
        case end
        case failed
    }

    private let condition = NSCondition()
    private let capacity: Int
    private var queue: [[UInt8]] = []
    private var producerDone = false
    private var storedError: (any Error)?
    private var consumerClosed = false
    private var producerCancelled = false
    private var spaceWaiter: CheckedContinuation<Void, Never>?

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// The error the producer ended with, if any.
    var producerError: (any Error)? {
        condition.lock()
        defer { condition.unlock() }
        return storedError
    }

    /// Queues `chunk`, waiting for room. False when the consumer has stopped reading.
    func put(_ chunk: [UInt8]) async throws -> Bool {
        while true {
            if let accepted = offer(chunk) { return accepted }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    waitForRoom(continuation)
                }
            } onCancel: {
                cancelProducer()
            }
            try Task.checkCancellation()
        }
    }

    /// Queues `chunk` if there is room: true when queued, false when the consumer is gone,
    /// nil when the queue is full.
    private func offer(_ chunk: [UInt8]) -> Bool? {
        condition.lock()
        defer { condition.unlock() }
        if consumerClosed { return false }
        guard queue.count < capacity else { return nil }
        queue.append(chunk)
        condition.signal()
        return true
    }

    private func waitForRoom(_ continuation: CheckedContinuation<Void, Never>) {
        condition.lock()
        if consumerClosed || producerCancelled || queue.count < capacity {
            condition.unlock()
            continuation.resume()
            return
        }
        spaceWaiter = continuation
        condition.unlock()
    }

    private func cancelProducer() {
        condition.lock()
        producerCancelled = true
        let waiter = spaceWaiter
        spaceWaiter = nil
        condition.unlock()
        waiter?.resume()
    }

    /// Marks the end of the bytes; `error` non-nil when the producer failed.
    func finish(error: (any Error)?) {
        condition.lock()
        producerDone = true
        if storedError == nil { storedError = error }
        condition.broadcast()
        condition.unlock()
    }

    /// The next chunk, blocking the calling thread until one is there or the bytes end.
    func take() -> Take {
        condition.lock()
        while queue.isEmpty && !producerDone {
            condition.wait()
        }
        if !queue.isEmpty {
            let chunk = queue.removeFirst()
            let waiter = spaceWaiter
            spaceWaiter = nil
            condition.unlock()
            waiter?.resume()
            return .chunk(chunk)
        }
        let failed = storedError != nil
        condition.unlock()
        return failed ? .failed : .end
    }

    /// The consumer stops reading: queued chunks are dropped and the producer told to stop.
    func closeConsumer() {
        condition.lock()
        consumerClosed = true
        queue.removeAll()
        let waiter = spaceWaiter
        spaceWaiter = nil
        condition.unlock()
        waiter?.resume()
    }
}
