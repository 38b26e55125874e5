#!/usr/bin/env python3
"""The notifier's peers for the tests: a real SMTP server (aiosmtpd, STARTTLS
required, AUTH LOGIN/PLAIN) and an HTTPS receiver standing in for an SMS
gateway. Each message and request they take is written to OUT as a file;
the first --smtp-reject messages are answered 451 and the first --http-hang
requests get no answer for --hang seconds, so the notifier's retries show.
Writes OUT/ready once both listen."""

import argparse
import json
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--smtp-port", type=int, required=True)
p.add_argument("--http-port", type=int, required=True)
p.add_argument("--cert", required=True)
p.add_argument("--key", required=True)
p.add_argument("--out", required=True)
p.add_argument("--user", default="callbox")
p.add_argument("--password", required=True)
p.add_argument("--smtp-reject", type=int, default=0)
p.add_argument("--http-hang", type=int, default=0)
p.add_argument("--hang", type=float, default=5.0)
a = p.parse_args()

lock = threading.Lock()
counts = {"smtp": 0, "http": 0, "mail": 0, "sms": 0}


def bump(k):
    with lock:
        counts[k] += 1
        return counts[k]


def write(name, data):
    tmp = os.path.join(a.out, name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(a.out, name))


class Mail:
    async def handle_DATA(self, server, session, envelope):
        if bump("smtp") <= a.smtp_reject:
            return "451 4.3.0 Try again later"
        n = bump("mail")
        head = "X-Envelope-To: %s\r\n" % ",".join(envelope.rcpt_tos)
        write("mail-%03d.eml" % n, head.encode() + envelope.original_content)
        return "250 2.0.0 Queued as test-%03d" % n


def auth(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login.decode() == a.user and data.password.decode() == a.password
    return AuthResult(success=ok)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(a.cert, a.key)
smtp = Controller(Mail(), hostname="127.0.0.1", port=a.smtp_port, tls_context=ctx,
                  require_starttls=True, authenticator=auth, auth_require_tls=True)
smtp.start()


class Gateway(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if bump("http") <= a.http_hang:
            time.sleep(a.hang)
            return
        n = bump("sms")
        write("sms-%03d.json" % n, json.dumps({
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }).encode())
        out = json.dumps({"id": "sms-%03d" % n}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


http = ThreadingHTTPServer(("127.0.0.1", a.http_port), Gateway)
sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
sctx.load_cert_chain(a.cert, a.key)
http.socket = sctx.wrap_socket(http.socket, server_side=True)
threading.Thread(target=http.serve_forever, daemon=True).start()
write("ready", b"ok")
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    pass
