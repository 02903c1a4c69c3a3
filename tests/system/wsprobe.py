# A raw WebSocket client for the public_origins trial (tests/system/origins.rs):
# connects from SOURCE to ADDR:PORT with TLS for HOST (trusting CA), upgrades
# with the given Origin, answers the gateway's connect.challenge with a
# token-authenticated `connect` request, and prints one JSON line: the HTTP
# status of the upgrade and the gateway's answer to `connect`. The token comes
# from the environment (WS_TOKEN), never argv.
import base64, json, os, socket, ssl, sys

source, addr, port, host, ca, origin = sys.argv[1:7]
port = int(port)
token = os.environ["WS_TOKEN"]
out = {"status": None, "ok": None, "code": None, "message": None, "close": None}
try:
    raw = socket.create_connection((addr, port), timeout=20, source_address=(source, 0))
    s = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=host)
    key = base64.b64encode(os.urandom(16)).decode()
    authority = host if port == 443 else f"{host}:{port}"
    s.sendall((f"GET / HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    out["status"] = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0

    def need(n):
        global rest
        while len(rest) < n:
            d = s.recv(65536)
            if not d:
                raise EOFError
            rest += d

    def frame():
        global rest
        need(2)
        ln, off = rest[1] & 0x7F, 2
        if ln == 126:
            need(4); ln, off = int.from_bytes(rest[2:4], "big"), 4
        elif ln == 127:
            need(10); ln, off = int.from_bytes(rest[2:10], "big"), 10
        need(off + ln)
        op, data = rest[0] & 0x0F, rest[off:off + ln]
        rest = rest[off + ln:]
        return op, data

    def send(text):
        p, m = text.encode(), os.urandom(4)
        n = len(p)
        hdr = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
        s.sendall(hdr + m + bytes(b ^ m[i % 4] for i, b in enumerate(p)))

    if out["status"] == 101:
        frame()  # connect.challenge
        send(json.dumps({"type": "req", "id": "c1", "method": "connect", "params": {
            "minProtocol": 4, "maxProtocol": 4,
            "client": {"id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli"},
            "role": "operator", "scopes": ["operator.read"], "caps": [],
            "auth": {"token": token}}}))
        while True:
            op, data = frame()
            if op == 8:
                out["close"] = data[2:].decode(errors="replace")
                break
            if op == 1:
                msg = json.loads(data)
                if msg.get("type") == "res" and msg.get("id") == "c1":
                    err = msg.get("error") or {}
                    out["ok"] = msg.get("ok")
                    out["code"] = (err.get("details") or {}).get("code") or err.get("code")
                    out["message"] = err.get("message")
                    break
except Exception as e:  # the trial prints it
    out["message"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
