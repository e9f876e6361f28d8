"""run_wstest.py — start the Autobahn|Testsuite fuzzingclient with one fix.

    PYTHONPATH=<fork>/autobahntestsuite /usr/bin/python3 run_wstest.py \
        -m fuzzingclient -s spec.json

The Python 3 fork (ricardo-valero/autobahn-testsuite) writes each case's
report with json.dumps, and the cases of 7.3.x keep bytes (close reasons) in
it: json.dumps raises inside clientConnectionLost, no further case starts
and wstest hangs after the last case.  The fix is made here, at import time,
on the fuzzing module's own reference to json, so the fork's files stay as
fetched: its json.dumps decodes bytes (UTF-8, invalid bytes replaced).

A second fix, in txaio (python3-txaio 21.2.1, which autobahn's timers go
through): its batched timer rounds a deadline DOWN to the whole second
(int(now + delay)), so the client's 1 s close-handshake timeout fires
anywhere from 0 to 1 s after its close frame.  A close sent in the last
milliseconds of a wall-clock second is then "not answered in time" however
fast the server answers: a random UNCLEAN closing behaviour (seen on 12.4.13
and 13.6.2, both ending exactly on a whole second).  The deadline is
rounded UP to the timer's bucket here instead, so every timeout is at least
what autobahn asked for.

Everything else, arguments included, is wstest's.
"""

import json
import math
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


def patch_batched_timer():
    from txaio import _common

    def call_later(self, delay, func, *args, **kwargs):
        now = self._get_seconds()
        bucket = self._bucket_milliseconds
        real_time = int(math.ceil((now + delay) * 1000 / bucket) * bucket)
        call = _common._BatchedCall(self, real_time, lambda: func(*args, **kwargs))
        try:
            self._buckets[real_time][1].append(call)
        except KeyError:
            delayed = self._create_delayed_call(max(0.0, real_time / 1000.0 - now),
                                                self._notify_bucket, real_time)
            self._buckets[real_time] = (delayed, [call])
        return call

    _common._BatchedTimer.call_later = call_later


def main():
    patch_fuzzing()
    patch_batched_timer()
    from autobahntestsuite import wstest
    sys.argv[0] = "wstest"
    wstest.run()


if __name__ == "__main__":
    main()
