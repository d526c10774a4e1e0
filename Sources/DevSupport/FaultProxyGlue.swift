import Foundation
import NIOCore
import NIOPosix

/// One side of a proxied connection; its partner sits on the other channel (same event loop).
/// The client side applies the client→upstream fault; the upstream side the upstream→client
/// fault and the delay queue of `latency` / `bytesPerSecond`.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Side { case client, upstream }

    private let side: Side
    private let state: ProxyState
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var channel: (any Channel)?
    private var pendingRead = false

    // The fault this side is armed with (its own direction: upstream→client on the upstream
    // side, client→upstream on the client side).
    private var generation: UInt64 = 0
    private var armed: ProxyState.Armed = .none
    private var armedBytes = 0
    /// Client side, `.hold`: the last bytes forwarded, to find a pattern split across reads.
    private var tail: [UInt8] = []
    /// No more forwarding in this side's direction (cut, stalled or held).
    private var halted = false
    /// This side's channel went inactive (or the handler was removed).
    private(set) var isClosed = false

    // Data read on this side waiting for its release time to the partner (latency, bandwidth
    // cap), in order: upstream→client on the upstream side, client→upstream (`pacesUploads`)
    // on the client side.
    private enum Delayed {
        case data(ByteBuffer)
        /// Close both sides once everything before has gone out (a cut).
        case cut
        /// This side's channel closed: close the partner once everything before has gone out.
        case closePartner
    }
    private var queue = CircularBuffer<(deadline: NIODeadline, item: Delayed)>()
    private var queuedBytes = 0
    private var lastDeadline = NIODeadline.uptimeNanoseconds(0)
    private var timer: Scheduled<Void>?

    init(side: Side, state: ProxyState) {
        self.side = side
        self.state = state
    }

    func pair(with other: GlueHandler) {
        partner = other
        other.partner = self
        kick()
        other.kick()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.channel = context.channel
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.isClosed = true
        self.context = nil
        // Data still queued for the client (and the close after it) goes out on its own timer.
        if queue.isEmpty { self.partner = nil }
    }

    // MARK: Calls from the partner

    private func partnerWrite(_ buffer: ByteBuffer) {
        guard let context else { return }
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    /// The other side went away: drop what waits for it, send what is queued, then close.
    private func partnerClosed() {
        dropQueue()
        guard let context else { return }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0)))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    private var partnerWritable: Bool {
        context?.channel.isWritable ?? false
    }

    private func partnerBecameWritable() {
        kick()
    }

    private var mayRead: Bool {
        !halted && partner?.partnerWritable == true && queuedBytes < FaultProxy.maxQueuedBytes
    }

    private func kick() {
        guard pendingRead, let context, mayRead else { return }
        pendingRead = false
        context.read()
    }

    // MARK: Channel events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch side {
        case .client: clientRead(context: context, buffer)
        case .upstream: upstreamRead(context: context, buffer)
        }
    }

    // MARK: client→upstream

    private func clientRead(context: ChannelHandlerContext, _ buffer: ByteBuffer) {
        var buffer = buffer
        if halted { return }
        if let (newGeneration, newArmed) = state.rearmClient(known: generation) {
            generation = newGeneration
            armed = newArmed
            armedBytes = 0
            tail = []
        }
        let count = buffer.readableBytes
        switch armed {
        case .none:
            forwardToUpstream(buffer)
        case .cut(let limit):
            guard armedBytes + count > limit else {
                armedBytes += count
                forwardToUpstream(buffer)
                return
            }
            if limit - armedBytes > 0, let prefix = buffer.readSlice(length: limit - armedBytes) {
                forwardToUpstream(prefix)
            }
            armedBytes = limit
            cutFromClientSide(context: context)
        case .stall(let limit):
            guard armedBytes + count > limit else {
                armedBytes += count
                forwardToUpstream(buffer)
                return
            }
            if limit - armedBytes > 0, let prefix = buffer.readSlice(length: limit - armedBytes) {
                forwardToUpstream(prefix)
                partner?.partnerFlush()
            }
            armedBytes = limit
            halted = true
            state.locked.withLock { $0.clientStallsPerformed += 1 }
        case .hold(let pattern, let occurrence):
            if state.isHolding(generation: generation) {
                halted = true
                return
            }
            let bytes = Array(buffer.readableBytesView)
            let combined = tail + bytes
            if !pattern.isEmpty, combined.count >= pattern.count {
                // Matches that end in the new bytes (those within `tail` were counted already).
                let firstStart = max(0, tail.count - pattern.count + 1)
                var start = firstStart
                while start + pattern.count <= combined.count {
                    if combined[start] == pattern[0], combined[start..<(start + pattern.count)].elementsEqual(pattern),
                       state.countMatch(generation: generation, occurrence: occurrence) {
                        let before = start - tail.count
                        if before > 0, let prefix = buffer.readSlice(length: before) {
                            forwardToUpstream(prefix)
                            partner?.partnerFlush()
                        }
                        halted = true
                        return
                    }
                    start += 1
                }
            }
            tail = Array(combined.suffix(max(0, pattern.count - 1)))
            forwardToUpstream(buffer)
        }
    }

    private func forwardToUpstream(_ buffer: ByteBuffer) {
        let count = buffer.readableBytes
        guard count > 0 else { return }
        state.locked.withLock { $0.bytesFromClient += count }
        guard let (rate, link) = state.uploadPacing(count) else {
            if queue.isEmpty {
                partner?.partnerWrite(buffer)
            } else {
                delay(buffer, until: max(NIODeadline.now(), lastDeadline))
            }
            return
        }
        var deadline = max(NIODeadline.now(), lastDeadline)
        if let rate { deadline = deadline + .nanoseconds(Int64(count) * 1_000_000_000 / Int64(rate)) }
        if let link { deadline = max(deadline, link) }
        delay(buffer, until: deadline)
    }

    /// Client side: the upstream gets what was forwarded, then both sides close.
    private func cutFromClientSide(context: ChannelHandlerContext) {
        halted = true
        state.locked.withLock { $0.clientCutsPerformed += 1 }
        let upstream = partner
        partner = nil
        upstream?.partner = nil
        upstream?.partnerClosed()  // flushes the allowed prefix, then closes
        context.close(promise: nil)
    }

    // MARK: upstream→client

    private func upstreamRead(context: ChannelHandlerContext, _ buffer: ByteBuffer) {
        var buffer = buffer
        if halted { return }
        if let (newGeneration, newArmed) = state.rearm(known: generation) {
            generation = newGeneration
            armed = newArmed
            armedBytes = 0
        }
        let count = buffer.readableBytes
        switch armed {
        case .none, .hold:
            forwardToClient(buffer)
        case .cut(let limit):
            guard armedBytes + count > limit else {
                armedBytes += count
                forwardToClient(buffer)
                return
            }
            if limit - armedBytes > 0, let prefix = buffer.readSlice(length: limit - armedBytes) {
                forwardToClient(prefix)
            }
            armedBytes = limit
            halted = true
            state.locked.withLock { $0.cutsPerformed += 1 }
            enqueue(.cut)
        case .stall(let limit):
            guard armedBytes + count > limit else {
                armedBytes += count
                forwardToClient(buffer)
                return
            }
            if limit - armedBytes > 0, let prefix = buffer.readSlice(length: limit - armedBytes) {
                forwardToClient(prefix)
                if queue.isEmpty { partner?.partnerFlush() }
            }
            armedBytes = limit
            halted = true
            state.locked.withLock { $0.stallsPerformed += 1 }
        }
    }

    /// Sends `buffer` to the client now, or after its delay when pacing is on (or earlier
    /// data still waits).
    private func forwardToClient(_ buffer: ByteBuffer) {
        let count = buffer.readableBytes
        guard count > 0 else { return }
        let (latency, rate) = state.pacing
        let link = state.linkSlot(count)
        if queue.isEmpty && latency == .zero && rate == nil && link == nil {
            state.locked.withLock { $0.bytesToClient += count }
            partner?.partnerWrite(buffer)
            return
        }
        var deadline = max(NIODeadline.now() + latency.timeAmount, lastDeadline)
        if let rate {
            deadline = deadline + .nanoseconds(Int64(count) * 1_000_000_000 / Int64(rate))
        }
        // The shared link serialises every connection's bytes; the latency comes on top.
        if let link { deadline = max(deadline, link + latency.timeAmount) }
        delay(buffer, until: deadline)
    }

    /// Queues `buffer` for the partner at `deadline` (after everything queued before it).
    private func delay(_ buffer: ByteBuffer, until deadline: NIODeadline) {
        lastDeadline = deadline
        queue.append((deadline, .data(buffer)))
        queuedBytes += buffer.readableBytes
        scheduleDrain()
    }

    /// Queues a close after the data before it (or does it now when nothing waits).
    private func enqueue(_ item: Delayed) {
        if queue.isEmpty {
            perform(item)
            return
        }
        queue.append((max(lastDeadline, NIODeadline.now()), item))
        scheduleDrain()
    }

    private func perform(_ item: Delayed) {
        switch item {
        case .data(let buffer):
            if side == .upstream { state.locked.withLock { $0.bytesToClient += buffer.readableBytes } }
            partner?.partnerWrite(buffer)
        case .cut:
            let client = partner
            partner = nil
            client?.partner = nil
            client?.partnerClosed()  // flushes what was sent, then closes
            channel?.close(promise: nil)
            dropQueue()
        case .closePartner:
            let client = partner
            partner = nil
            client?.partner = nil
            client?.partnerClosed()
            dropQueue()
        }
    }

    private func scheduleDrain() {
        guard timer == nil, let head = queue.first, let loop = channel?.eventLoop else { return }
        timer = loop.assumeIsolated().scheduleTask(deadline: head.deadline) { [self] in
            self.timer = nil
            self.drain()
        }
    }

    private func drain() {
        let now = NIODeadline.now()
        var wrote = false
        while let head = queue.first, head.deadline <= now {
            queue.removeFirst()
            if case .data(let buffer) = head.item {
                queuedBytes -= buffer.readableBytes
                perform(head.item)
                wrote = true
            } else {
                if wrote { partner?.partnerFlush() }
                perform(head.item)
                return
            }
        }
        if wrote { partner?.partnerFlush() }
        if queue.isEmpty && isClosed { partner = nil }
        scheduleDrain()
        kick()
    }

    private func dropQueue() {
        queue.removeAll()
        queuedBytes = 0
        timer?.cancel()
        timer = nil
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if queue.isEmpty { partner?.partnerFlush() }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        if !queue.isEmpty {
            // What this side sent still goes out at its pace, then the partner is closed.
            enqueue(.closePartner)
        } else {
            let other = partner
            partner = nil
            other?.partner = nil
            other?.partnerClosed()
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if mayRead {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
