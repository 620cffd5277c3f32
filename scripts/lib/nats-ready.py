"""Exits 0 once the NATS server at 127.0.0.1:PORT serves JetStream (its
$JS.API.INFO answers without an error, so a clustered node also has a meta
leader), 1 after TIMEOUT seconds. Usage: nats-ready.py PORT [TIMEOUT]."""
import socket
import sys
import time


def jetstream_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            f = s.makefile("rb")
            if not f.readline().startswith(b"INFO "):
                return False
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
                      b"SUB _INBOX.ready 1\r\nPUB $JS.API.INFO _INBOX.ready 0\r\n\r\n")
            while True:
                line = f.readline()
                if not line:
                    return False
                if line.startswith(b"PING"):
                    s.sendall(b"PONG\r\n")
                elif line.startswith(b"MSG "):
                    size = int(line.split()[-1])
                    body = f.read(size + 2)
                    return b'"error"' not in body
                elif line.startswith(b"-ERR"):
                    return False
    except OSError:
        return False


port = int(sys.argv[1])
deadline = time.monotonic() + float(sys.argv[2] if len(sys.argv) > 2 else 20)
while time.monotonic() < deadline:
    if jetstream_answers(port):
        sys.exit(0)
    time.sleep(0.2)
sys.exit(1)
