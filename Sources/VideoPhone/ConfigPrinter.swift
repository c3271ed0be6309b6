/// `videophoned --print-config`: the configuration the daemon runs with, as TOML that
/// `--check-config` reads back: the board profile merged, every default filled in, peers
/// from `peers.d` included (each with the file it came from), secrets masked.
extension DeviceConfig {
    /// What a secret prints as: empty stays empty, so "not set" remains visible.
    static func mask(_ s: String, _ show: Bool) -> String { show || s.isEmpty ? s : "********" }

    public func effectiveTOML(showSecrets: Bool = false) -> String {
        var out = ""
        func q(_ s: String) -> String { TOMLWriter.quoted(s) }
        func line(_ key: String, _ value: String, _ comment: String? = nil) {
            out += "\(key) = \(value)" + (comment.map { "    # \($0)" } ?? "") + "\n"
        }
        func list(_ items: [String]) -> String { "[" + items.map(q).joined(separator: ", ") + "]" }
        func hostPort(_ h: String, _ p: UInt16) -> String { h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)" }

        out += "# effective configuration (videophoned --print-config)\(showSecrets ? "" : "; secrets masked")\n"
        out += "[device]\n"
        line("name", q(name))
        if let board { line("board", q(board)) }
        line("state_directory", q(stateDirectory))
        line("auto_answer", autoAnswer ? "true" : "false")
        line("ring_timeout_s", String(ringTimeoutSeconds))
        out += "\n[signalling]\n"
        line("listen", q(hostPort(signallingHost, signallingPort)))
        line("token", q(DeviceConfig.mask(signallingToken, showSecrets)))
        if let signallingURL { line("url", q(signallingURL)) }
        out += "\n[control]\n"
        line("socket", q(controlSocket))
        out += "\n[network]\n"
        if let networkAddresses { line("addresses", list(networkAddresses)) } else { out += "# addresses: every interface that is up\n" }
        line("include_loopback", includeLoopback ? "true" : "false")
        line("mdns", mdns ? "true" : "false")
        line("trickle", trickle ? "true" : "false")
        out += "\n[ice]\n"
        line("stun_servers", list(stunServers))
        for t in turnServers {
            out += "\n[[turn]]\n"
            let scheme = t.transport == "tls" ? "turns:\(hostPort(t.host, t.port))" : "turn:\(hostPort(t.host, t.port))?transport=\(t.transport)"
            line("url", q(scheme))
            line("username", q(t.username))
            if let secret = t.secret {
                line("secret", q(DeviceConfig.mask(secret, showSecrets)))
                line("ttl_s", String(t.ttlSeconds))
            } else {
                line("credential", q(DeviceConfig.mask(t.credential, showSecrets)))
            }
            if let ca = t.ca { line("ca", q(ca)) }
        }
        out += "\n[video]\n"
        line("source", q(videoSource))
        line("device", q(videoDevice))
        line("width", String(videoWidth))
        line("height", String(videoHeight))
        line("fps", String(videoFPS))
        line("bitrate_kbps", String(videoBitrateKbps))
        line("encoder", q(videoEncoder))
        if let videoEncoderDevice { line("encoder_device", q(videoEncoderDevice)) }
        line("decoder", q(videoDecoder))
        if let videoDecoderDevice { line("decoder_device", q(videoDecoderDevice)) }
        out += "\n[display]\n"
        line("output", q(displayOutput))
        line("device", q(displayDevice))
        if let displayConnector { line("connector", q(displayConnector)) }
        if let displayMode { line("mode", q(displayMode.description)) }
        line("blank_after_s", String(displayBlankAfterSeconds))
        out += "\n[audio]\n"
        line("source", q(audioSource))
        line("capture_device", q(audioCaptureDevice))
        line("sink", q(audioSink))
        line("playback_device", q(audioPlaybackDevice))
        let ap = audioProcessing
        line("echo_cancellation", "\(ap.echoCancellation)")
        line("echo_cancellation_level", q(audioEchoCancellationLevel))
        line("noise_suppression", "\(ap.noiseSuppression)")
        line("noise_suppression_level", q(audioNoiseSuppressionLevel))
        line("gain_control", "\(ap.gainControl)")
        line("gain_control_level", "\(audioGainControlLevel)")
        if audioSource == "talker" {
            line("talker_file", q(audioTalkerFile ?? ""))
            line("echo_delay_ms", "\(audioEchoDelayMs)")
            line("echo_attenuation_db", "\(audioEchoAttenuationDB)")
        }
        if let g = gpio {
            out += "\n[gpio]\n"
            func lineName(_ l: GPIOLineName) -> String {
                switch l { case .named(let n): q(n); case .offset(let o): String(o) }
            }
            if let chip = g.chip { line("chip", q(chip)) }
            if let b = g.button { line("button", lineName(b)) }
            line("button_active_low", g.buttonActiveLow ? "true" : "false")
            line("button_bias", q(g.buttonBias))
            line("debounce_ms", String(g.debounceMs))
            if let l = g.callLED { line("call_led", lineName(l)) }
            line("led_active_low", g.ledActiveLow ? "true" : "false")
        }
        if let b = broker {
            out += "\n[broker]\n"
            line("urls", list(b.urls.map(\.description)))
            if let ca = b.ca { line("ca", q(ca)) }
            if let c = b.certificate { line("certificate", q(c)) }
            if let k = b.key { line("key", q(k)) }
            if let u = b.username { line("username", q(u)) }
            if let pw = b.password { line("password", q(DeviceConfig.mask(pw, showSecrets))) }
            line("topic_prefix", q(b.topicPrefix))
            line("keepalive_s", String(b.keepaliveSeconds))
            line("replay_window_s", String(b.replayWindowSeconds))
            line("standby", b.standby ? "true" : "false")
        }
        out += "\n[metrics]\n"
        line("listen", q(metricsListen ?? ""), metricsListen == nil ? "served on the signalling port" : nil)
        for p in peers {
            out += "\n[[peer]]" + (p.source.map { "    # \($0)" } ?? "") + "\n"
            line("name", q(p.name))
            if !p.url.isEmpty { line("url", q(p.url)) }
            if p.via == .broker { line("via", q("broker")) }
            line("token", q(DeviceConfig.mask(p.token, showSecrets)))
            line("accept_token", q(DeviceConfig.mask(p.acceptToken, showSecrets)))
            if let f = p.fingerprint { line("fingerprint", q(f)) }
        }
        if !pendingPairings.isEmpty {
            out += "\n# pending pairing codes (peers.d): " + pendingPairings.map(\.id).joined(separator: ", ") + "\n"
        }
        return out
    }
}
