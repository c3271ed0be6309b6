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

/// One TURN allocation and the client transport to its server. The transport thread owns
/// the allocation's life; media threads send through it too, hence the lock around the
/// TURN state (channel numbers) and the wrap buffer.
final class RelayAllocation: @unchecked Sendable {
    let lock = Lock()
    var client: TURNClient
    let server: TURNServer
    /// UDP: the host socket the allocation was made from.
    let socket: UDPSocket
    let socketIndex: Int
    var candidateIndex: Int?
    private var wrapBuffer: [UInt8] = []
    private var reported = false

    init(server: TURNServer, socket: UDPSocket, socketIndex: Int) {
        self.server = server
        self.socket = socket
        self.socketIndex = socketIndex
        self.client = TURNClient(server: server.address, username: server.username, password: server.password)
        wrapBuffer.reserveCapacity(1600)
    }

    /// Sends raw bytes to the TURN server.
    func sendToServer(_ bytes: [UInt8]) { socket.send(bytes, to: server.address) }

    /// Sends a datagram to `peer` through the relay, asking for a permission and a
    /// channel the first time.
    func send(_ payload: UnsafeRawBufferPointer, to peer: TransportAddress, now: Instant = Instant.now()) {
        lock.withLock {
            for r in client.addPeer(peer, now: now) { socket.send(r, to: server.address) }
            client.wrap(payload, to: peer, into: &wrapBuffer, pad: false)
            socket.send(wrapBuffer, to: server.address)
        }
    }

    func send(_ bytes: [UInt8], to peer: TransportAddress) {
        bytes.withUnsafeBytes { send($0, to: peer) }
    }

    /// True once, to log an allocation failure a single time per call.
    func shouldReport() -> Bool { lock.withLock { defer { reported = true }; return !reported } }
}
