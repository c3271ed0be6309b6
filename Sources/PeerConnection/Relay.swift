import NetworkCore
import STUN
import TURN

/// A TURN server to allocate a relayed candidate on.
public struct TURNServer: Sendable, Equatable {
    public enum Transport: String, Sendable { case udp, tcp, tls }
    public var address: TransportAddress
    public var transport: Transport
    public var username: String
    public var password: String
    public init(address: TransportAddress, transport: Transport, username: String, password: String) {
        self.address = address; self.transport = transport; self.username = username; self.password = password
    }
}

/// Where an ICE local candidate sends from: a host socket, or a TURN allocation.
enum CandidatePath {
    case socket(Int)
    case relay(RelayAllocation)
}

/// One TURN allocation and the client transport to its server (a host UDP socket, or a
/// TCP/TLS connection). The transport thread owns the allocation's life; media threads
/// send through it too, hence the lock around the TURN state, the link and the buffer.
final class RelayAllocation: @unchecked Sendable {
    let lock = Lock()
    var client: TURNClient
    let server: TURNServer
    /// UDP: the host socket the allocation was made from (nil over TCP/TLS).
    let socket: UDPSocket?
    let socketIndex: Int?
    /// TCP/TLS: the connection to the server.
    let link: StreamLink?
    var candidateIndex: Int?
    private var wrapBuffer: [UInt8] = []
    private var reported = false

    init(server: TURNServer, socket: UDPSocket, socketIndex: Int) {
        self.server = server
        self.socket = socket
        self.socketIndex = socketIndex
        self.link = nil
        self.client = TURNClient(server: server.address, username: server.username, password: server.password)
        wrapBuffer.reserveCapacity(1600)
    }

    init(server: TURNServer, link: StreamLink) {
        self.server = server
        self.socket = nil
        self.socketIndex = nil
        self.link = link
        self.client = TURNClient(server: server.address, username: server.username, password: server.password)
        client.reliableTransport = true
        wrapBuffer.reserveCapacity(1600)
    }

    /// Sends raw bytes to the TURN server. Call with the lock held.
    private func toServer(_ bytes: [UInt8]) {
        if let link { link.write(bytes) } else { socket?.send(bytes, to: server.address) }
    }

    /// Sends raw bytes to the TURN server.
    func sendToServer(_ bytes: [UInt8]) { lock.withLock { toServer(bytes) } }

    /// Sends a datagram to `peer` through the relay, asking for a permission and a
    /// channel the first time.
    func send(_ payload: UnsafeRawBufferPointer, to peer: TransportAddress, now: Instant = Instant.now()) {
        lock.withLock {
            for r in client.addPeer(peer, now: now) { toServer(r) }
            client.wrap(payload, to: peer, into: &wrapBuffer, pad: link != nil)
            toServer(wrapBuffer)
        }
    }

    func send(_ bytes: [UInt8], to peer: TransportAddress) {
        bytes.withUnsafeBytes { send($0, to: peer) }
    }

    /// True once, to log an allocation failure a single time per call.
    func shouldReport() -> Bool { lock.withLock { defer { reported = true }; return !reported } }
}
