import COpenSSL

/// Nonces seen inside the clock window, bounded. A message older or newer than the window
/// is refused before it gets here, so a nonce only needs remembering for as long as its
/// message could still pass the window check; after that it is forgotten.
public struct ReplayCache: Sendable {
    public let capacity: Int
    private var expiry: [[UInt8]: Int64] = [:]
    /// Insertion order, for expiry (times only grow with `now`).
    private var order: [(nonce: [UInt8], until: Int64)] = []
    private var head = 0

    public init(capacity: Int = 4096) { self.capacity = capacity }

    public var count: Int { expiry.count }

    /// Records `nonce` until `until`; false when it is already there (a replay) or the
    /// cache is full of live nonces (`full` is then true).
    public mutating func insert(_ nonce: [UInt8], until: Int64, now: Int64) -> (fresh: Bool, full: Bool) {
        while head < order.count, order[head].until < now {
            if expiry[order[head].nonce] == order[head].until { expiry[order[head].nonce] = nil }
            head += 1
        }
        if head > 1024 && head * 2 > order.count { order.removeFirst(head); head = 0 }
        if let e = expiry[nonce], e >= now { return (false, false) }
        guard expiry.count < capacity else { return (false, true) }
        expiry[nonce] = until
        order.append((nonce, until))
        return (true, false)
    }
}

/// Checks signalling messages addressed to this device: pinned sender, signature,
/// recipient, timestamp within ``window`` of the clock passed in, nonce not seen before.
/// No I/O; call it from one thread (it owns the replay cache).
public struct SignalVerifier: Sendable {
    /// SHA-256 of this device's certificate.
    public var me: [UInt8]
    /// Pinned SHA-256 fingerprints and the peer names they belong to.
    public var pinned: [[UInt8]: String]
    /// How far a timestamp may be from our clock, either way (ms).
    public var windowMs: Int64
    public private(set) var replay: ReplayCache

    public init(me: [UInt8], pinned: [[UInt8]: String], windowMs: Int64 = 30_000, replayCapacity: Int = 4096) {
        self.me = me; self.pinned = pinned; self.windowMs = windowMs; self.replay = ReplayCache(capacity: replayCapacity)
    }

    /// The message and the pinned peer that sent it, or why it is refused. The checks that
    /// cost nothing come first; the replay cache only takes signed messages, so forgeries
    /// cannot fill it.
    public mutating func open(_ bytes: [UInt8], nowMs: Int64) -> Result<(peer: String, message: SignalMessage), SignalRefusal> {
        let u: SignalMessage.Unverified
        switch SignalMessage.parse(bytes) {
        case .failure(let r): return .failure(r)
        case .success(let x): u = x
        }
        guard let digest = sha256(u.certificate) else { return .failure(.malformed("certificate")) }
        guard digest == u.message.from else { return .failure(.wrongSender) }
        guard let peer = pinned[digest] else { return .failure(.unpinned(hex(digest))) }
        guard u.message.to == me else { return .failure(.notForUs(peer: peer)) }
        guard verifySignature(certificate: u.certificate, signature: u.signature, message: u.signedText) else {
            return .failure(.badSignature(peer: peer))
        }
        let skew = u.message.time - nowMs
        guard abs(skew) <= windowMs else { return .failure(.stale(peer: peer, skewMs: skew)) }
        // Remember the nonce until its message can no longer pass the window check.
        let r = replay.insert(u.message.from + u.message.nonce, until: u.message.time + windowMs, now: nowMs)
        if r.full { return .failure(.replayCacheFull(peer: peer)) }
        guard r.fresh else { return .failure(.replayed(peer: peer)) }
        return .success((peer, u.message))
    }
}

/// SHA-256 of `data`.
public func sha256(_ data: [UInt8]) -> [UInt8]? {
    var out = [UInt8](repeating: 0, count: 32)
    var len: UInt32 = 0
    let ok = data.withUnsafeBufferPointer { EVP_Digest($0.baseAddress, $0.count, &out, &len, EVP_sha256(), nil) }
    return ok == 1 && len == 32 ? out : nil
}

/// Whether `signature` (DER ECDSA) over `message` verifies with the P-256 key of
/// `certificate` (DER). Any other key type is refused.
public func verifySignature(certificate: [UInt8], signature: [UInt8], message: [UInt8]) -> Bool {
    let x509: OpaquePointer? = certificate.withUnsafeBufferPointer { buf in
        var p: UnsafePointer<UInt8>? = buf.baseAddress
        return d2i_X509(nil, &p, buf.count)
    }
    guard let x509 else { ERR_clear_error(); return false }
    defer { X509_free(x509) }
    guard let key = X509_get0_pubkey(x509), EVP_PKEY_get_base_id(key) == EVP_PKEY_EC, EVP_PKEY_get_bits(key) == 256 else {
        ERR_clear_error(); return false
    }
    guard let ctx = EVP_MD_CTX_new() else { return false }
    defer { EVP_MD_CTX_free(ctx) }
    guard EVP_DigestVerifyInit(ctx, nil, EVP_sha256(), nil, key) == 1 else { ERR_clear_error(); return false }
    let ok = signature.withUnsafeBufferPointer { s in
        message.withUnsafeBufferPointer { m in EVP_DigestVerify(ctx, s.baseAddress, s.count, m.baseAddress, m.count) }
    }
    if ok != 1 { ERR_clear_error() }
    return ok == 1
}
