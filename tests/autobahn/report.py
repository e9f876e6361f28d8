"""report.py — summarise an Autobahn|Testsuite run (tools/autobahn.sh).

    /usr/bin/python3 report.py REPORTS_DIR/index.json

Prints, per server (agent): how many cases ended OK, NON-STRICT,
INFORMATIONAL, UNIMPLEMENTED and FAILED (Autobahn's "behavior"), then every
case that is not OK with its behavior, its closing behavior and the close
code the server sent.  A closing behavior other than OK or INFORMATIONAL
(FAILED BY CLIENT: the client had to drop TCP; WRONG CODE; UNCLEAN;
FAILED) is listed even when the behavior is OK.  Consecutive cases with the
same outcome are one line ("12.1.1-13.6.18 (198)").  Exit status 1 when any case
is FAILED, or its closing behavior is FAILED or UNCLEAN (the HTML report's
"Fail" and "Unclean"), 0 otherwise.

12.* and 13.* (permessage-deflate) UNIMPLEMENTED on the lws-reader agent are
the named lws-inherited exception: compression needs moongate's frame
reader, and `reader: libwebsockets` with compression is a config error
(docs/operations.md, "Compression").  They are marked "(expected)" and
counted on the totals line; UNIMPLEMENTED anywhere else is listed plainly.
"""

import json
import re
import sys

KINDS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
CLOSE_FINE = ("OK", "INFORMATIONAL")
CLOSE_FAILED = ("FAILED", "UNCLEAN")
# tools/autobahn.sh's agents, in its order; any other agent after them
AGENTS = ["moongate-reader", "lws-reader", "wss"]
# (agent, case prefixes, behavior) that docs/operations.md explains
EXPECTED = [("lws-reader", ("12.", "13."), "UNIMPLEMENTED")]


def expected(agent, case_id, behavior):
    return any(agent == a and case_id.startswith(p) and behavior == b for a, p, b in EXPECTED)


def case_key(case_id):
    return [int(p) if p.isdigit() else p for p in re.split(r"[.]", case_id)]


def runs(odd):
    """Consecutive cases (no other case between them) with the same outcome
    as one entry -> (first, last, count, outcome): 12.* and 13.* are 216
    cases that mostly end the same way."""
    out = []
    for pos, cid, outcome in odd:
        if out and out[-1][4] == pos - 1 and out[-1][3] == outcome:
            first, _, n, _, _ = out[-1]
            out[-1] = (first, cid, n + 1, outcome, pos)
        else:
            out.append((cid, cid, 1, outcome, pos))
    return [r[:4] for r in out]


def summarise(agent, cases):
    counts = dict.fromkeys(KINDS, 0)
    close_failed = 0
    known = 0
    odd = []
    for pos, cid in enumerate(sorted(cases, key=case_key)):
        c = cases[cid]
        beh = c.get("behavior", "?")
        # NO CLOSE / WRONG CODE as a behavior count as FAILED, as in the
        # HTML report ("Fail")
        counts[beh if beh in counts else "FAILED"] += 1
        close = c.get("behaviorClose", "?")
        close_failed += close in CLOSE_FAILED
        if beh != "OK" or close not in CLOSE_FINE:
            note = ""
            if expected(agent, cid, beh):
                note, known = " (expected)", known + 1
            odd.append((pos, cid, (beh + note, close, c.get("remoteCloseCode"))))
    lines = ["== %s: %d cases" % (agent, len(cases)),
             "   " + "  ".join("%s %d" % (k, counts[k]) for k in KINDS)
             + "  (closing FAILED/UNCLEAN %d)" % close_failed
             + ("  (%d UNIMPLEMENTED expected: permessage-deflate needs moongate's reader)"
                % known if known else "")]
    if odd:
        lines.append("   %-22s %-25s %-17s %s"
                     % ("case", "behavior", "close behavior", "close code"))
        for first, last, n, (beh, close, code) in runs(odd):
            name = first if n == 1 else "%s-%s (%d)" % (first, last, n)
            lines.append("   %-22s %-25s %-17s %s" % (name, beh, close, code))
    return counts["FAILED"] + close_failed, lines


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: report.py REPORTS_DIR/index.json\n")
        return 2
    with open(argv[1]) as f:
        index = json.load(f)
    failed = 0
    order = sorted(index, key=lambda a: (AGENTS.index(a) if a in AGENTS else len(AGENTS), a))
    for agent in order:
        bad, lines = summarise(agent, index[agent])
        print("\n".join(lines))
        failed += bad
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
