import VideoPhone
#if canImport(Glibc)
import Glibc
#endif

/// videophonectl: talks to the running daemon over its control socket.
let usage = """
usage: videophonectl [--socket PATH] COMMAND
  status [--json]   call state and live figures
  watch             status, refreshed every second until Ctrl-C
  call [PEER]       call a provisioned peer (the first by default)
  answer            answer a ringing call
  hangup            end the call
  press [--long]    press the call button (short: call, answer or hang up; long: reject or cancel)
  identity          this device's certificate fingerprint, for provisioning peers

"""

var socketPath = "/run/videophone/control.sock"
var args = Array(CommandLine.arguments.dropFirst())
if args.first == "--socket" {
    guard args.count >= 2 else { printError(usage); exit(2) }
    socketPath = args[1]
    args.removeFirst(2)
}
guard let command = args.first else { printError(usage); exit(2) }

func run(_ line: String, socket socketPath: String) -> Int32 {
    do {
        let reply = try controlRequest(path: socketPath, command: line)
        if reply.hasPrefix("ok\n") {
            print(reply.dropFirst(3), terminator: "")
        } else if reply.hasPrefix("ok ") {
            print(reply.dropFirst(3), terminator: "")
        } else {
            printError("videophonectl: " + (reply.hasPrefix("error ") ? String(reply.dropFirst(6)) : reply))
            return 1
        }
        return 0
    } catch {
        printError("videophonectl: \(error)\n")
        return 1
    }
}

switch command {
case "status", "call", "answer", "hangup", "identity", "press":
    exit(run(args.joined(separator: " "), socket: socketPath))
case "watch":
    while true {
        print("\u{1B}[H\u{1B}[2J", terminator: "")
        _ = run("status", socket: socketPath)
        sleep(1)
    }
case "--help", "-h", "help":
    print(usage, terminator: "")
default:
    printError("videophonectl: unknown command '\(command)'\n" + usage)
    exit(2)
}
