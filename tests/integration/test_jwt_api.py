"""gw.jwt.verify as scripts see it (docs/lua-api.md): the claims table as
gw.json.decode returns it, nil and the reason for a refused token, a Lua
error for options that cannot work, in the sandbox.  Tokens come from
Debian's python3-jwt; keys from python3-cryptography.

One gateway per test: its script takes {"token": ..., "opts": ...} as a
message, calls gw.jwt.verify in a pcall and answers what came back.
"""
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import RawWS

SCRIPT = r"""
function on_message(conn, data)
  local req = gw.json.decode(data)
  local ok, claims, why = pcall(gw.jwt.verify, req.token, req.opts)
  if not ok then
    return conn:send(gw.json.encode({error = claims}))
  end
  if claims == nil then
    return conn:send(gw.json.encode({reason = why}))
  end
  conn:send(gw.json.encode({claims = claims, sub_type = type(claims.sub),
                            null_is_json_null = claims.z == gw.json.null}))
end
"""

SECRET = "s" * 32
NOW = 1700000000


def pub_pem(k):
    return k.public_key().public_bytes(ser.Encoding.PEM,
                                       ser.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture
def call(gateway):
    g = gateway(SCRIPT, {"lua": {"sandbox": True}})
    c = RawWS(g.port, g.path)

    def go(token, **opts):
        c.send_text(json.dumps({"token": token, "opts": opts}))
        kind, data = c.recv_message()
        return json.loads(data)

    yield go
    c.close()


def test_claims_come_back_decoded(call):
    claims = {"sub": "ålice 😀", "exp": NOW + 60, "n": [1, 2.5, {"x": True}], "z": None}
    r = call(jwt.encode(claims, SECRET, algorithm="HS512"), key=SECRET, alg="HS512", now=NOW)
    assert r["claims"] == claims  # null stays gw.json.null, encoded back as null
    assert r["sub_type"] == "string" and r["null_is_json_null"] is True


def test_reasons(call):
    tok = jwt.encode({"exp": NOW, "nbf": NOW - 10, "aud": "a", "iss": "i"}, SECRET)
    base = dict(key=SECRET, algs=["HS256", "HS384"], aud="a")
    assert "claims" in call(tok, now=NOW - 1, **base)
    assert call(tok, now=NOW, **base) == {"reason": "expired"}
    assert "claims" in call(tok, now=NOW + 5, leeway=10, **base)
    assert call(tok, now=NOW - 20, **base) == {"reason": "not yet valid"}
    assert call(tok, now=NOW - 1, iss=["x", "y"], **base) == {"reason": "issuer mismatch"}
    assert "claims" in call(tok, now=NOW - 1, iss=["x", "i"], **base)
    assert call(tok, now=NOW - 1, **dict(base, aud=["b"])) == {"reason": "audience mismatch"}
    assert call(tok, now=NOW - 1, key=SECRET, alg="HS256") == {"reason": "audience mismatch"}
    assert call(tok, now=NOW - 1, key=SECRET, alg="HS384", aud="a") == \
        {"reason": "alg not allowed"}
    assert call(tok, now=NOW - 1, **dict(base, key=SECRET + "x")) == {"reason": "bad signature"}
    assert call("x" * 9000, **base) == {"reason": "token too large"}
    assert call("a.b", **base) == {"reason": "malformed"}
    notime = jwt.encode({"sub": "x"}, SECRET)
    assert call(notime, key=SECRET, alg="HS256", require_exp=True) == {"reason": "missing exp"}
    assert "claims" in call(notime, key=SECRET, alg="HS256", require_exp=False)
    # the real clock when now is not given
    assert "claims" in call(notime, key=SECRET, alg="HS256")
    assert call(tok, **base) == {"reason": "expired"}


def test_option_errors_raise(call):
    tok = jwt.encode({"sub": "x"}, SECRET)
    rsa_small = pub_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    ec_pub = pub_pem(ec.generate_private_key(ec.SECP256R1()))
    cases = [
        (dict(key=SECRET), "give the allowed algorithms in opts.alg or opts.algs"),
        (dict(key=SECRET, alg="HS256", algs=["HS256"]), "exactly one of them"),
        (dict(key=SECRET, alg="none"), "unknown algorithm 'none'"),
        (dict(key=SECRET, algs=[]), "a list of 1 to 16 strings"),
        (dict(key=SECRET, algs=["HS256", 5]), "opts.algs[2] must be a string"),
        (dict(key=SECRET, alg="HS256", audience="x"), "unknown option audience"),
        (dict(alg="HS256"), "opts.key must be a string"),
        (dict(key="", alg="HS256"), "the HMAC secret is empty"),
        (dict(key=ec_pub, alg="HS256"), "a PEM key is not an HMAC secret"),
        (dict(key=ec_pub, algs=["HS256", "ES256"]), "cannot be allowed together"),
        (dict(key=SECRET, alg="RS256"), "opts.key: not a PEM public key"),
        (dict(key=rsa_small, alg="RS256"), "opts.key: RSA key under 2048 bits"),
        (dict(key=ec_pub, alg="RS256"), "the key serves none of the allowed algorithms"),
        (dict(key=SECRET, alg="HS256", leeway=-1), "leeway must be a finite number >= 0"),
        (dict(key=SECRET, alg="HS256", leeway="5"), "opts.leeway must be a number"),
        (dict(key=SECRET, alg="HS256", require_exp=1), "opts.require_exp must be a boolean"),
        (dict(key=SECRET, alg="HS256", aud=["a"] * 17), "a list of 1 to 16 strings"),
    ]
    for opts, msg in cases:
        r = call(tok, **opts)
        assert "error" in r and msg in r["error"], (opts, r)
        assert r["error"].startswith("gw.jwt.verify: ") or "bad argument" in r["error"], r
    r = call(5, key=SECRET, alg="HS256")
    assert "claims" not in r  # a number is converted by Lua: a malformed token
    assert r == {"reason": "malformed"}


def test_many_public_keys(call):
    """More distinct PEM keys than the state keeps parsed (64): every one
    still verifies its own tokens and refuses the others'."""
    pairs = [ec.generate_private_key(ec.SECP256R1()) for _ in range(70)]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for rnd in range(2):
        for i, k in enumerate(pairs):
            tok = jwt.encode({"sub": "k%d" % i}, k, algorithm="ES256")
            assert call(tok, key=pub_pem(k), alg="ES256")["claims"] == {"sub": "k%d" % i}
            other = pub_pem(pairs[(i + 1) % len(pairs)])
            assert call(tok, key=other, alg="ES256") == {"reason": "bad signature"}
    tok = jwt.encode({"sub": "r"}, rsa_key, algorithm="RS256")
    pkcs1 = rsa_key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.PKCS1).decode()
    assert call(tok, key=pkcs1, algs=["RS256", "ES256"])["claims"] == {"sub": "r"}
    assert call(tok, key=pub_pem(pairs[0]), algs=["RS256", "ES256"]) == \
        {"reason": "alg not allowed"}
