"""examples/auth: the upgrade is refused with 401 unless the request carries
a valid JSON Web Token; a valid one puts its claims on the connection.

Tokens are made by Debian's python3-jwt (an independent implementation),
with keys the openssl command line makes in a temporary folder: HS256 (the
shipped moongate.yaml), RS256 and ES256 (the same file with app.jwt
swapped for a public key).  Each refusal is an HTTP status and body read
from a real upgrade attempt on a raw socket; the accepted connections are
made with python3-websockets and the raw client.
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import jwt
import pytest
import websockets
import yaml

from conftest import (ROOT, RawWS, handshake_request, http_raw, run, run_cli, ws_connect,
                      ws_recv)

EXAMPLE = os.path.join(ROOT, "examples", "auth")
SHIPPED_CONF = os.path.join(EXAMPLE, "moongate.yaml")
SCRIPT = open(os.path.join(EXAMPLE, "auth.lua")).read()
SHIPPED = yaml.safe_load(open(SHIPPED_CONF))
JWT_CONF = SHIPPED["app"]["jwt"]
PATH = SHIPPED["listen"][0]["path"]
AUD = JWT_CONF["aud"]
ISS = JWT_CONF["iss"]
LEEWAY = JWT_CONF["leeway"]


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """PEM key pairs made by the openssl command line: RSA 2048 and EC P-256,
    plus a second pair of each (the wrong key)."""
    d = tmp_path_factory.mktemp("keys")
    out = {}
    specs = {"rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
             "ec": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]}
    for name, spec in specs.items():
        for which in ("", "_other"):
            priv, pub = d / (name + which + ".pem"), d / (name + which + ".pub.pem")
            subprocess.run(["openssl", "genpkey"] + spec + ["-out", str(priv)], check=True,
                           capture_output=True, timeout=60)
            subprocess.run(["openssl", "pkey", "-in", str(priv), "-pubout", "-out", str(pub)],
                           check=True, capture_output=True, timeout=60)
            out[name + which] = priv.read_text()
            out[name + which + "_pub"] = pub.read_text()
    return out


# kind -> (algs in the config, the signing key's name in `keys`, alg)
KINDS = {"HS256": (["HS256"], None, "HS256"),
         "RS256": (["RS256"], "rsa", "RS256"),
         "ES256": (["ES256"], "ec", "ES256")}


class Auth:
    """A running example with one kind of key, and a token factory for it."""

    def __init__(self, gw, kind, keys):
        self.gw, self.kind, self.keys = gw, kind, keys
        self.alg = KINDS[kind][2]
        self.key_name = KINDS[kind][1]

    def signing_key(self, other=False):
        if self.key_name is None:
            return JWT_CONF["key"] + ("-not" if other else "")
        return self.keys[self.key_name + ("_other" if other else "")]

    def claims(self, **over):
        now = int(time.time())
        c = {"sub": "alice", "aud": AUD, "iss": ISS, "iat": now, "exp": now + 300,
             "scope": "chat"}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def token(self, other_key=False, headers=None, **over):
        return jwt.encode(self.claims(**over), self.signing_key(other_key), algorithm=self.alg,
                          headers=headers)

    def attempt(self, token=None, header=True, query=None):
        """One upgrade attempt on a raw socket -> HTTPResponse."""
        extra = {"Authorization": "Bearer " + token} if (token is not None and header) else {}
        path = PATH + ("?" + query if query else "")
        return http_raw(self.gw.port, handshake_request(path, self.gw.port, extra=extra))

    def refused(self, token, reason, **kw):
        since = self.gw.mark()
        r = self.attempt(token, **kw)
        assert r.status == 401, r
        assert r.body == ("invalid token: %s\n" % reason).encode(), r
        self.gw.wait_log(r"refused 127\.0\.0\.1: %s" % reason, 5, since)
        return r


def start(gateway, kind, keys):
    algs, key_name, _ = KINDS[kind]
    gw = gateway(SCRIPT, start=False, path=PATH)
    conf = json.loads(json.dumps(SHIPPED))
    conf["listen"] = [dict(SHIPPED["listen"][0], port=gw.port)]
    conf["script"] = "app.lua"
    del conf["admin"]
    if key_name:
        conf["app"]["jwt"] = dict(JWT_CONF, algs=algs, key=keys[key_name + "_pub"])
    gw.write_config(conf)
    gw.start()
    return Auth(gw, kind, keys)


@pytest.fixture(params=sorted(KINDS))
def auth(request, gateway, keys):
    return start(gateway, request.param, keys)


def test_shipped_config_is_valid_and_sandboxed():
    r = run_cli(["-t", "-c", SHIPPED_CONF])
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout + r.stderr
    # the README describes these values
    assert SHIPPED["lua"]["sandbox"] is True
    assert JWT_CONF["algs"] == ["HS256"] and LEEWAY == 30


def test_valid_token_gets_in_with_its_claims(auth):
    claims = auth.claims(sub="alice-" + auth.kind)
    token = jwt.encode(claims, auth.signing_key(), algorithm=auth.alg)

    async def go():
        async with ws_connect(auth.gw.url,
                              extra_headers={"Authorization": "Bearer " + token}) as ws:
            assert await ws_recv(ws) == "hello alice-" + auth.kind
            await ws.send("whoami")
            return json.loads(await ws_recv(ws))

    assert run(go()) == claims
    auth.gw.wait_log(r"conn \d+ is alice-%s" % auth.kind)


def test_token_in_the_query_for_browsers(auth):
    c = RawWS(auth.gw.port, PATH + "?access_token=" + auth.token(sub="bob"))
    assert c.recv_message() == ("text", "hello bob")
    c.close()
    r = auth.attempt(query="access_token=" + auth.token(other_key=True))
    assert r.status == 401 and r.body == b"invalid token: bad signature\n", r


def test_missing_token(auth):
    r = auth.attempt()
    assert r.status == 401 and r.body == b"missing token\n", r
    r = http_raw(auth.gw.port, handshake_request(PATH, auth.gw.port,
                                                 extra={"Authorization": "Basic YTpi"}))
    assert r.status == 401 and r.body == b"invalid token: malformed\n", r


def test_expired_and_not_yet_valid(auth):
    now = int(time.time())
    auth.refused(auth.token(exp=now - LEEWAY - 60), "expired")
    auth.refused(auth.token(nbf=now + LEEWAY + 60), "not yet valid")
    # within the configured leeway both pass
    for tok in (auth.token(exp=now - 5), auth.token(nbf=now + 5)):
        assert auth.attempt(tok).status == 101
    auth.refused(auth.token(exp=None), "missing exp")


def test_wrong_key(auth):
    auth.refused(auth.token(other_key=True), "bad signature")


def test_tampered_payload_and_signature(auth):
    h, p, s = auth.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims["sub"] = "admin"
    forged = b64u(json.dumps(claims, separators=(",", ":")).encode())
    auth.refused("%s.%s.%s" % (h, forged, s), "bad signature")
    sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    sig[len(sig) // 2] ^= 0x01
    auth.refused("%s.%s.%s" % (h, p, b64u(bytes(sig))), "bad signature")


def test_wrong_audience_and_issuer(auth):
    auth.refused(auth.token(aud="someone-else"), "audience mismatch")
    auth.refused(auth.token(aud=["a", "b"]), "audience mismatch")
    auth.refused(auth.token(aud=None), "audience mismatch")
    assert auth.attempt(auth.token(aud=["a", AUD])).status == 101
    auth.refused(auth.token(iss="https://evil.example"), "issuer mismatch")
    auth.refused(auth.token(iss=None), "issuer mismatch")


def test_alg_none(auth):
    token = jwt.encode(auth.claims(), None, algorithm="none")
    assert token.endswith(".")
    auth.refused(token, "alg not allowed")
    # the same, with a signature from the right key appended
    h, p, _ = token.split(".")
    _, _, s = auth.token().split(".")
    auth.refused("%s.%s.%s" % (h, p, s), "alg not allowed")


def test_malformed(auth):
    h, p, s = auth.token().split(".")
    auth.refused("%s.%s" % (h, p), "malformed")
    auth.refused("%s.%s.%s.%s" % (h, p, s, s), "malformed")
    auth.refused("%s.%s*.%s" % (h, p[:-1], s), "malformed")
    auth.refused("%s.%s.%s=" % (h, p, s), "malformed")
    auth.refused("%s+.%s.%s" % (h[:-1], p, s), "malformed")
    auth.refused("not-a-token", "malformed")


def test_alg_confusion_rs256_only(gateway, keys):
    """HS256 signed with the RSA public key's PEM text as the secret (what a
    verifier that trusts the header's alg would accept) against the RS256
    configuration.  python3-jwt refuses to make it, so it is made here."""
    auth = start(gateway, "RS256", keys)
    header = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64u(json.dumps(auth.claims()).encode())
    signed = (header + "." + payload).encode()
    for secret in (keys["rsa_pub"], keys["rsa_pub"].strip()):
        mac = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
        auth.refused(signed.decode() + "." + b64u(mac), "alg not allowed")
    # an ES256 token against the RS256 configuration
    es = jwt.encode(auth.claims(), keys["ec"], algorithm="ES256")
    auth.refused(es, "alg not allowed")
    # and the genuine RS256 token still passes
    assert auth.attempt(auth.token()).status == 101


def test_refusals_leave_the_gateway_serving(gateway, keys):
    """Many refusals of every kind, then a valid token: no state is left
    behind by a refusal (the PEM key is parsed once and kept)."""
    auth = start(gateway, "ES256", keys)
    bad = [auth.token(other_key=True), auth.token(aud="x"), "a.b.c", "", "." * 100,
           auth.token() + "A" * 1000]
    for i in range(60):
        tok = bad[i % len(bad)]
        r = auth.attempt(tok)
        assert r.status == 401, (tok[:40], r)
    c = RawWS(auth.gw.port, PATH, headers={"Authorization": "Bearer " + auth.token(sub="z")})
    assert c.recv_message() == ("text", "hello z")
    c.close()
