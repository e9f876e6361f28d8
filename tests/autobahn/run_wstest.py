"""run_wstest.py — start the Autobahn|Testsuite fuzzingclient with one fix.

    PYTHONPATH=<fork>/autobahntestsuite /usr/bin/python3 run_wstest.py \
        -m fuzzingclient -s spec.json

The Python 3 fork (ricardo-valero/autobahn-testsuite) writes each case's
report with json.dumps, and the cases of 7.3.x keep bytes (close reasons) in
it: json.dumps raises inside clientConnectionLost, no further case starts
and wstest hangs after the last case.  The fix is made here, at import time,
on the fuzzing module's own reference to json, so the fork's files stay as
fetched: its json.dumps decodes bytes (UTF-8, invalid bytes replaced).
Everything else, arguments included, is wstest's.
"""

import json
import sys
import types


def _bytes_as_text(obj):
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", "replace")
    raise TypeError("%r is not JSON serializable" % type(obj).__name__)


def _dumps(obj, *args, **kwargs):
    kwargs.setdefault("default", _bytes_as_text)
    return json.dumps(obj, *args, **kwargs)


def patch_fuzzing():
    from autobahntestsuite import fuzzing
    shim = types.ModuleType("json")
    shim.__dict__.update({k: v for k, v in vars(json).items() if not k.startswith("__")})
    shim.dumps = _dumps
    fuzzing.json = shim


def main():
    patch_fuzzing()
    from autobahntestsuite import wstest
    sys.argv[0] = "wstest"
    wstest.run()


if __name__ == "__main__":
    main()
