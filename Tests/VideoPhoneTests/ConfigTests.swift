import AudioProcessing
import Foundation
import Testing
@testable import VideoPhone

@Suite struct ConfigTests {
    @Test func theSimulatorConfigsAreValid() throws {
        for name in ["alice", "bob", "videophone"] {
            let path = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
            let c = try DeviceConfig.load(path: "/\(path)/board/sim/\(name).toml")
            #expect(c.name == (name == "videophone" ? "sim" : name))
            #expect(c.peers.count == (name == "videophone" ? 0 : 1))
        }
    }

    var profilesDirectory: String { "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/") + "/board/profiles" }

    /// Every shipped board profile is valid on its own.
    @Test(arguments: ["emulated", "raspberry-pi-4", "raspberry-pi-5"])
    func shippedBoardProfilesAreValid(name: String) throws {
        let c = try DeviceConfig.parse("[device]\nboard = \"\(name)\"\n", file: "cfg.toml", boardsDirectory: profilesDirectory)
        #expect(c.board == name)
        #expect(c.videoSource == "v4l2" && c.audioSource == "alsa" && c.gpio?.button != nil)
    }

    /// The profile supplies the hardware; the device's own file overrides single keys.
    @Test func boardProfileThenOverrides() throws {
        let c = try DeviceConfig.parse("""
        [device]
        name = "door"
        board = "emulated"
        [video]
        width = 320
        [gpio]
        debounce_ms = 50
        """, file: "cfg.toml", boardsDirectory: profilesDirectory)
        #expect(c.videoDevice == "vivid" && c.videoHeight == 480 && c.videoWidth == 320)
        #expect(c.audioCaptureDevice == "plughw:CARD=Loopback,DEV=1,SUBDEV=0")
        #expect(c.gpio?.button == .named("call-button") && c.gpio?.debounceMs == 50)
    }

    @Test func boardProfileMistakesNameTheirFile() throws {
        let dir = NSTemporaryDirectory() + "vp-profiles-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "[video]\nfps = 0\n".write(toFile: dir + "/bad.toml", atomically: true, encoding: .utf8)
        try "[video]\nfps = 10\n[[peer]]\nname = \"x\"\n".write(toFile: dir + "/greedy.toml", atomically: true, encoding: .utf8)
        for (board, expected) in [
            ("bad", "\(dir)/bad.toml:2: video.fps: 0 is out of range"),
            ("greedy", "\(dir)/greedy.toml:4: peer.name: a board profile sets only [video], [audio] and [gpio]"),
            ("missing", "cfg.toml:2: device.board: no board profile 'missing' (\(dir)/missing.toml: cannot open"),
        ] {
            #expect { try DeviceConfig.parse("[device]\nboard = \"\(board)\"\n", file: "cfg.toml", boardsDirectory: dir) } throws: { e in
                let d = "\(e)"
                if !d.contains(expected) { Issue.record("got '\(d)', expected '\(expected)'") }
                return true
            }
        }
    }

    @Test func fullConfigParses() throws {
        let c = try DeviceConfig.parse("""
        # comment
        [device]
        name = "door"          # trailing comment
        auto_answer = true
        [signalling]
        listen = "[::1]:9000"
        token = 'lit#eral'
        [network]
        addresses = ["127.0.0.1", "::1"]
        [video]
        width = 640
        height = 480
        fps = 25
        bitrate_kbps = 1_000
        [[peer]]
        name = "kitchen"
        url = "http://192.0.2.5:8080"
        token = "t1"
        [[peer]]
        name = "garden"
        url = "http://192.0.2.6:8080"
        accept_token = "garden-secret"
        fingerprint = "sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
        [metrics]
        listen = "127.0.0.1:9101"
        [audio]
        source = "alsa"
        capture_device = "plughw:CARD=Loopback,DEV=1"
        sink = "alsa"
        [gpio]
        chip = "gpio-sim.0-node0"
        button = "call-button"
        call_led = 3
        debounce_ms = 20
        """, file: "test.toml")
        #expect(c.name == "door")
        #expect(c.signallingHost == "::1" && c.signallingPort == 9000)
        #expect(c.signallingToken == "lit#eral")
        #expect(c.networkAddresses == ["127.0.0.1", "::1"])
        #expect(c.videoBitrateKbps == 1000)
        #expect(c.peers.map(\.name) == ["kitchen", "garden"])
        #expect(c.peers[1].token == "")
        #expect(c.peers[1].acceptToken == "garden-secret")
        #expect(c.peers[1].fingerprint?.hasPrefix("sha-256 AB:CD") == true)
        #expect(c.metricsListen == "127.0.0.1:9101")
        #expect(c.audioSource == "alsa" && c.audioSink == "alsa" && c.audioCaptureDevice == "plughw:CARD=Loopback,DEV=1")
        #expect(c.gpio?.button == .named("call-button"))
        #expect(c.gpio?.callLED == .offset(3))
        #expect(c.gpio?.buttonActiveLow == true && c.gpio?.buttonBias == "pull-up" && c.gpio?.debounceMs == 20)
    }

    /// The microphone's processing is on by default for a microphone that hears the
    /// speaker (ALSA, the simulated talker) and off for the tone; each part can be turned off.
    @Test func audioProcessingDefaultsAndOverrides() throws {
        let alsa = try DeviceConfig.parse("[audio]\nsource = \"alsa\"\n", file: "cfg.toml").audioProcessing
        #expect(alsa.echoCancellation && alsa.noiseSuppression && alsa.gainControl)
        #expect(alsa.echoLevel == .moderate && alsa.noiseLevel == .moderate && alsa.gainTargetDBFS == 3)
        let tone = try DeviceConfig.parse("[audio]\nsource = \"tone\"\n", file: "cfg.toml").audioProcessing
        #expect(!tone.anyEnabled)
        let c = try DeviceConfig.parse("""
            [audio]
            source = "alsa"
            echo_cancellation_level = "high"
            noise_suppression = false
            noise_suppression_level = "very-high"
            gain_control_level = 9
            """, file: "cfg.toml").audioProcessing
        #expect(c.echoCancellation && !c.noiseSuppression && c.gainControl)
        #expect(c.echoLevel == .high && c.noiseLevel == .veryHigh && c.gainTargetDBFS == 9)
    }

    /// Each kind of mistake gets a message naming the file, line, key and problem.
    @Test(arguments: [
        ("[video]\nwidth = \"wide\"\n", "cfg.toml:2: video.width: expected an integer, got string"),
        ("[video]\nfps = 500\n", "cfg.toml:2: video.fps: 500 is out of range 1...60"),
        ("[video]\ncolour = 3\n", "cfg.toml:2: video.colour: unknown key"),
        ("[vidoe]\nwidth = 3\n", "cfg.toml:2: vidoe.width: unknown table [vidoe]"),
        ("name = \"x\"\n", "cfg.toml:1: name: unknown key at top level"),
        ("[device]\nname = \"x\n", "cfg.toml:2: device.name: unterminated string"),
        ("[device]\nname = x\n", "cfg.toml:2: device.name: cannot read value 'x' (strings need quotes)"),
        ("[device]\nname = 0x1F\n", "cfg.toml:2: device.name: expected a string, got integer"),
        ("[video.extra]\nx = 1\n", "cfg.toml:1: video.extra: unknown key"),
        ("[video]\nwidth = 641\n", "cfg.toml:2: video.width: must be even"),
        ("[video]\nwidth = { a = 1 }\n", "cfg.toml:2: video.width: expected an integer, got table"),
        ("[[pending]]\nid = \"x\"\n", "cfg.toml:2: pending.id: [[pending]] belongs in peers.d"),
        ("[device]\nname = \"a\"\nname = \"b\"\n", "cfg.toml:3: device.name: key defined twice"),
        ("[signalling]\nlisten = \"localhost\"\n", "cfg.toml:2: signalling.listen: expected 'host:port'"),
        ("[signalling]\nlisten = \"example.org:80\"\n", "is not a numeric IP address"),
        ("[video]\nsource = \"webcam\"\n", "cfg.toml:2: video.source: 'webcam' is not one of"),
        ("[[peer]]\nurl = \"http://1.2.3.4:80\"\n", "cfg.toml:2: peer.name: peer #1 has no name"),
        ("[gpio]\nbutton = 17\n", "cfg.toml:2: gpio.button: an offset needs gpio.chip"),
        ("[gpio]\nbutton = true\n", "cfg.toml:2: gpio.button: expected a line name (\"call-button\") or an offset (17), got boolean"),
        ("[gpio]\nbutton_bias = \"up\"\n", "cfg.toml:2: gpio.button_bias: 'up' is not one of pull-up"),
        ("[audio]\nsink = \"hdmi\"\n", "cfg.toml:2: audio.sink: 'hdmi' is not one of alsa, counting"),
        ("[audio]\necho_cancellation = \"yes\"\n", "cfg.toml:2: audio.echo_cancellation: expected true or false, got string"),
        ("[audio]\necho_cancellation_level = \"max\"\n", "cfg.toml:2: audio.echo_cancellation_level: 'max' is not one of low, moderate, high"),
        ("[audio]\nnoise_suppression_level = \"loud\"\n", "cfg.toml:2: audio.noise_suppression_level: 'loud' is not one of low, moderate, high, very-high"),
        ("[audio]\ngain_control_level = 40\n", "cfg.toml:2: audio.gain_control_level: 40 is out of range 0...31"),
        ("[audio]\ngain_control = 1\n", "cfg.toml:2: audio.gain_control: expected true or false, got integer"),
        ("[audio]\nsource = \"talker\"\n", "audio.talker_file: audio.source = \"talker\" needs a talker_file"),
        ("[audio]\nsource = \"talker\"\ntalker_file = \"t.wav\"\necho_delay_ms = 900\n", "cfg.toml:4: audio.echo_delay_ms: 900 is out of range 0...500"),
        ("[[peer]]\nname = \"p\"\nurl = \"ftp://x\"\n", "cfg.toml:3: peer.url: expected 'http://host:port'"),
        ("[device\n", "cfg.toml:1: device: expected ']' to end the table header"),
        ("just words\n", "cfg.toml:1: just: expected '=' after the key, got 'w'"),
        ("[device]\n[device]\n", "cfg.toml:2: device: table [device] defined twice"),
        ("[device]\nring_timeout_s = 1\n", "cfg.toml:2: device.ring_timeout_s: 1 is out of range 5...600"),
        ("[metrics]\nlisten = \"localhost\"\n", "cfg.toml:2: metrics.listen: expected a numeric 'host:port'"),
        ("[[peer]]\nname = \"p\"\nurl = \"http://1.2.3.4:1\"\nfingerprint = \"md5 00\"\n", "cfg.toml:4: peer.fingerprint: expected 'sha-256 AB:CD:...'"),
        ("[[peer]]\nname = \"p\"\nurl = \"http://1.2.3.4:1\"\n[[peer]]\nname = \"p\"\nurl = \"http://1.2.3.4:2\"\n", "cfg.toml:5: peer.name: peer 'p' defined twice: here and at cfg.toml:2"),
    ])
    func mistakesNameTheirLineAndKey(text: String, expected: String) {
        #expect { try DeviceConfig.parse(text, file: "cfg.toml") } throws: { e in
            let d = "\(e)"
            if !d.contains(expected) { Issue.record("got '\(d)', expected '\(expected)'") }
            return true
        }
    }

    /// `[broker]` and `via = "broker"` mistakes: file, line, key and what is wrong.
    @Test(arguments: [
        ("[broker]\nurls = []\n", "cfg.toml:2: broker.urls: expected a non-empty array"),
        ("[broker]\nurls = \"mqtts://1.2.3.4:8883\"\n", "cfg.toml:2: broker.urls: expected a non-empty array"),
        ("[broker]\nurls = [\"http://1.2.3.4:8883\"]\n", "cfg.toml:2: broker.urls: 'http://1.2.3.4:8883' is not \"mqtts://HOST:PORT\""),
        ("[broker]\nurls = [\"mqtts://1.2.3.4:8883\", \"mqtts://1.2.3.4:8883\"]\n", "cfg.toml:2: broker.urls: 'mqtts://1.2.3.4:8883' is listed twice"),
        ("[broker]\nurls = [\"mqtts://1.2.3.4:x\"]\n", "cfg.toml:2: broker.urls: 'mqtts://1.2.3.4:x' is not"),
        ("[broker]\nurls = [\"mqtts://1.2.3.4\"]\nca = \"/nonexistent/ca.pem\"\n", "cfg.toml:3: broker.ca: cannot read '/nonexistent/ca.pem'"),
        ("[broker]\nurls = [\"mqtts://1.2.3.4\"]\ncertificate = \"/dev/null\"\n", "cfg.toml:2: broker.key: a client certificate needs its key"),
        ("[broker]\nurls = [\"mqtts://1.2.3.4\"]\npassword = \"x\"\n", "cfg.toml:2: broker.username: a password needs a username"),
        ("[broker]\nurls = [\"mqtt://1.2.3.4\"]\nusername = \"u\"\npassword = \"x\"\n", "cfg.toml:2: broker.urls: credentials would cross the network in the clear"),
        ("[broker]\nurls = [\"mqtts://1.2.3.4\"]\ntopic_prefix = \"a/#\"\n", "cfg.toml:3: broker.topic_prefix: expected a topic like"),
        ("[broker]\nurls = [\"mqtts://1.2.3.4\"]\ntopic_prefix = \"/a\"\n", "cfg.toml:3: broker.topic_prefix: expected a topic like"),
        ("[broker]\nurls = [\"mqtts://1.2.3.4\"]\nkeepalive_s = 1\n", "cfg.toml:3: broker.keepalive_s: 1 is out of range 5...3600"),
        ("[broker]\nurl = \"mqtts://1.2.3.4\"\n", "cfg.toml:2: broker.url: unknown key"),
        ("[broker]\nurls = [\"mqtts://1.2.3.4\"]\nstandby = true\n", "cfg.toml:3: broker.standby: a standby connection needs a second broker"),
        ("[broker]\nurls = [\"mqtts://1.2.3.4\", \"mqtts://1.2.3.5\"]\nstandby = 1\n", "cfg.toml:3: broker.standby: expected"),
        ("[broker]\nca = \"/dev/null\"\n", "cfg.toml:2: broker.urls: [broker] needs urls"),
        ("[[peer]]\nname = \"p\"\nvia = \"broker\"\nfingerprint = \"sha-256 AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB\"\n", "cfg.toml:3: peer.via: via = \"broker\" needs a [broker] table"),
        ("[broker]\nurls = [\"mqtts://1.2.3.4\"]\n[[peer]]\nname = \"p\"\nvia = \"broker\"\n", "cfg.toml:5: peer.via: peer 'p' is reached through the broker, which needs its sha-256 fingerprint pinned"),
        ("[[peer]]\nname = \"p\"\nvia = \"pigeon\"\n", "cfg.toml:3: peer.via: 'pigeon' is not one of http, broker"),
        ("[[peer]]\nname = \"p\"\n", "cfg.toml:2: peer.url: peer 'p' has no url (or set via = \"broker\")"),
    ])
    func brokerMistakesNameTheirLineAndKey(text: String, expected: String) {
        #expect { try DeviceConfig.parse(text, file: "cfg.toml") } throws: { e in
            let d = "\(e)"
            if !d.contains(expected) { Issue.record("got '\(d)', expected '\(expected)'") }
            return true
        }
    }

    @Test func brokerConfigIsRead() throws {
        let c = try DeviceConfig.parse("""
        [broker]
        urls = ["mqtts://10.0.0.1:8883", "mqtts://[2001:db8::1]", "mqtt://10.0.0.3"]
        ca = "/dev/null"
        username = "dev"
        topic_prefix = "fleet/eu"
        keepalive_s = 30
        [[peer]]
        name = "grandma"
        via = "broker"
        fingerprint = "sha-256 AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB"
        """, file: "cfg.toml")
        let b = try #require(c.broker)
        #expect(b.urls.map { $0.description } == ["mqtts://10.0.0.1:8883", "mqtts://[2001:db8::1]:8883", "mqtt://10.0.0.3:1883"])
        #expect(b.ca == "/dev/null" && b.username == "dev" && b.password == nil && b.topicPrefix == "fleet/eu" && b.keepaliveSeconds == 30)
        #expect(c.peers.first?.via == .broker && c.peers.first?.url == "")
        // --check-config prints it so that it reads back the same.
        let again = try DeviceConfig.parse(c.effectiveTOML(showSecrets: true), file: "printed.toml")
        #expect(again.broker == c.broker && again.peers.map(\.via) == c.peers.map(\.via))
    }

    /// coturn's use-auth-secret: the expiry, the user, and the HMAC Python's hmac module gives.
    @Test func turnSecretGivesTimeLimitedCredentials() throws {
        let c = try DeviceConfig.parse("""
        [[turn]]
        url = "turn:10.0.0.1:3478"
        secret = "north"
        """, file: "cfg.toml")
        let t = try #require(c.turnServers.first)
        let (user, password) = t.credentials(now: 1_700_000_000, deviceName: "kitchen")
        #expect(user == "1700086400:kitchen")
        #expect(password == "Js55kZZKk+QUlpAEMdDsNySBv50=")
        #expect(base64(Array("ab".utf8)) == "YWI=" && base64(Array("abc".utf8)) == "YWJj" && base64([]) == "")
        #expect(throws: ConfigError.self) {
            try DeviceConfig.parse("[[turn]]\nurl = \"turn:10.0.0.1\"\nsecret = \"s\"\ncredential = \"c\"\nusername = \"u\"\n", file: "cfg.toml")
        }
        let again = try DeviceConfig.parse(c.effectiveTOML(showSecrets: true), file: "printed.toml")
        #expect(again.turnServers == c.turnServers)
    }

    /// What issue #15 listed: a file any TOML tool reads, the device reads too.
    @Test func tomlAsTheGuidesWriteIt() throws {
        let c = try DeviceConfig.parse("""
        device = { name = "caf\\u00e9", ring_timeout_s = 0x1E }
        "signalling".token = \"\"\"
        multi\\
           line\"\"\"
        [ice]
        stun_servers = [
          "192.0.2.10:3478",  # primary
          "192.0.2.11:3478",
        ]
        [video]
        'width' = 640
        """, file: "cfg.toml")
        #expect(c.name == "café" && c.ringTimeoutSeconds == 30 && c.signallingToken == "multiline")
        #expect(c.stunServers == ["192.0.2.10:3478", "192.0.2.11:3478"] && c.videoWidth == 640)
    }

    @Test func missingFileIsNamed() {
        #expect { try DeviceConfig.load(path: "/nonexistent/v.toml") } throws: { e in "\(e)".hasPrefix("/nonexistent/v.toml: cannot open") }
    }

    @Test func constantTimeComparison() {
        #expect(constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!constantTimeEqual(Array("abc".utf8), Array("abd".utf8)))
        #expect(!constantTimeEqual(Array("abc".utf8), Array("abcd".utf8)))
        #expect(!constantTimeEqual([], Array("a".utf8)))
    }

    @Test func jsonWriterEscapes() {
        var j = JSONWriter()
        j.beginObject()
        j.field("a\"b", "line\nnext\u{1}")
        j.field("n", 3)
        j.field("x", Optional<Double>.none)
        j.field("f", 1.5)
        j.beginArray("l"); j.beginObject(); j.field("t", true); j.endObject(); j.endArray()
        j.endObject()
        #expect(j.text == #"{"a\"b":"line\nnext\u0001","n":3,"x":null,"f":1.5,"l":[{"t":true}]}"#)
    }

    @Test func percentiles() {
        #expect(percentile([], 50) == nil)
        #expect(percentile([3, 1, 2], 50) == 2)
        #expect(percentile(Array(1...100).map(Double.init), 99) == 99)
    }
}
