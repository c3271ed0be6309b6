"""One HTTP load client: COUNT GETs, one connection each (the daemon closes after each
answer), cycling through PATHS, from SOURCE. Prints its counts as JSON.
    python3 httpload.py IP PORT COUNT SOURCE TIMEOUT PATH..."""
import json
import socket
import sys
import time


def main():
    ip, port, count, source, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    paths = sys.argv[6:] or ["/status"]
    requests = [f"GET {p} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: videophone-abuse\r\n\r\n".encode() for p in paths]
    statuses, errors, latencies = {}, {}, []
    t0 = time.monotonic()
    for i in range(count):
        start = time.monotonic()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.bind((source, 0))
            s.connect((ip, port))
            s.sendall(requests[i % len(requests)])
            head = b""
            while True:
                c = s.recv(65536)
                if not c:
                    break
                if len(head) < 16:
                    head += c[:16]
            code = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/") else "no-status"
            statuses[code] = statuses.get(code, 0) + 1
        except OSError as e:
            k = type(e).__name__
            errors[k] = errors.get(k, 0) + 1
        finally:
            s.close()
        latencies.append(round((time.monotonic() - start) * 1000, 2))
    print(json.dumps({"sent": count, "statuses": statuses, "errors": errors, "seconds": time.monotonic() - t0, "latencies_ms": latencies}))


if __name__ == "__main__":
    main()
