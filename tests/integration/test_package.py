"""Install rules, the Debian package and the systemd unit (packaging/).

Reuses the build that made $MOONGATE_BIN ($MOONGATE_BUILD, else its folder):
nothing is configured or compiled again.  Checked:
- `cmake --install BUILD --prefix P`: P/bin/moongate, moongate-cat and
  moongate-admin, the default config at P/etc/moongate naming
  P/share/moongate's script and page (absolute paths, no ../), the logrotate
  snippet at P/etc/logrotate.d naming P's moongate and config, docs (with
  examples/monitoring) and moongate(8) under P/share; the installed moongate
  passes `-t` on the installed config from another folder; the man page
  renders without warnings and has every option of --help (long and short)
  and the control features (--signal, SIGQUIT, SIGUSR1, pid_file,
  log.file); a second install keeps an edited config and logrotate snippet.
- the service story agrees: the installed config's pid_file is in the unit's
  RuntimeDirectory, its log goes to stderr (the journal) with the commented
  log.file in the unit's LogsDirectory, which the logrotate snippet rotates.
- the installed moongate, run with the installed config (pid_file moved to a
  temporary folder, free ports), answers `moongate -S reload -c` (reload ok)
  and `-S stop -c` (it exits 0, the pid file goes), then `-S` says 3.
- the unit installed there: `systemd-analyze verify` with nothing on stderr
  (it exits 0 on unknown keys and bad values and only warns), Type=notify,
  ExecReload sends HUP, LimitNOFILE above what limits.max_connections asks
  (max_connections + max_handshakes + 128, listen.c), the sandbox keys,
  RuntimeDirectory, and the same User= as the package's postinst creates.
- `cpack -G DEB` from the same build: the control fields (Section net,
  Depends with the packages of libwebsockets, LuaJIT, libyaml, OpenSSL, as
  dpkg-shlibdeps computed them; Recommends with what moongate-admin runs),
  the contents (with /etc/logrotate.d/moongate and /usr/bin/moongate-admin),
  conffiles (the config and the logrotate snippet), maintainer scripts; `dpkg -x` into a scratch root, and the extracted moongate run with
  `-t` on the extracted config with its /usr/share/moongate paths moved into
  the scratch root (the one edit; every absolute path the config names is
  checked to exist in the root first); then that moongate (stripped by
  cpack) serves with it (pid_file moved too), on free ports: the packaged page over HTTP and the
  packaged app's reply over WebSocket.  The package is not installed with
  dpkg -i (that would change this machine): postinst is checked as text."""

import http.client
import os
import re
import shutil
import subprocess

import pytest
import yaml

import conftest
from conftest import BIN, Gateway, free_port, run, ws_connect, ws_recv

BUILD = os.environ.get("MOONGATE_BUILD") or os.path.dirname(os.path.abspath(BIN))


def sh(cmd, timeout=120, **kw):
    """Run cmd; its CompletedProcess (text), asserting exit status 0."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert p.returncode == 0, "%s: exit %d\n%s\n%s" % (cmd, p.returncode, p.stdout, p.stderr)
    return p


def need(*tools):
    for t in tools:
        if not shutil.which(t):
            pytest.skip("%s not installed (tools/deps.sh --test)" % t)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    assert os.path.exists(os.path.join(BUILD, "cmake_install.cmake")), BUILD
    p = str(tmp_path_factory.mktemp("prefix"))
    sh(["cmake", "--install", BUILD, "--prefix", p])
    return p


def test_install_layout(prefix):
    for f in ["bin/moongate", "bin/moongate-cat", "bin/moongate-admin"]:
        assert os.access(os.path.join(prefix, f), os.X_OK), f
    for f in ["etc/moongate/moongate.yaml", "etc/logrotate.d/moongate",
              "share/moongate/scripts/app.lua",
              "share/moongate/static/index.html", "share/doc/moongate/README.md",
              "share/doc/moongate/operations.md", "share/doc/moongate/lua-api.md",
              "share/doc/moongate/moongate-cat.md", "share/man/man8/moongate.8",
              "share/doc/moongate/examples/monitoring/README.md",
              "share/doc/moongate/examples/monitoring/alerts.yml",
              "share/doc/moongate/examples/monitoring/dashboard.json",
              "lib/systemd/system/moongate.service"]:
        assert os.path.isfile(os.path.join(prefix, f)), f
    # The installed moongate-admin answers its usage (exit 2) without a gateway.
    p = subprocess.run([os.path.join(prefix, "bin/moongate-admin")], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2 and "clients" in p.stderr, (p.returncode, p.stderr)


def test_installed_config_names_installed_files(prefix, tmp_path):
    conf = os.path.join(prefix, "etc/moongate/moongate.yaml")
    text = open(conf).read()
    data = yaml.safe_load(text)
    share = os.path.join(prefix, "share/moongate")
    assert data["script"] == share + "/scripts/app.lua"
    assert data["static"]["root"] == share + "/static"
    assert data["lua"]["path"] == share + "/scripts/?.lua"
    live = [l.split(" #")[0] for l in text.splitlines() if not l.lstrip().startswith("#")]
    assert not [l for l in live if "../" in l], "a relative path is left"
    # From another folder: nothing resolves against the working directory.
    p = sh([os.path.join(prefix, "bin/moongate"), "-t", "-c", conf], cwd=str(tmp_path))
    assert p.stdout.strip() == conf + ": configuration ok"
    # The installed binary is the one built (its --version answers).
    assert sh([os.path.join(prefix, "bin/moongate"), "-V"]).stdout.startswith("moongate ")


def test_reinstall_keeps_an_edited_config(prefix):
    conf = os.path.join(prefix, "etc/moongate/moongate.yaml")
    rot = os.path.join(prefix, "etc/logrotate.d/moongate")
    for f in [conf, rot]:
        with open(f, "a") as out:
            out.write("# edited by the operator\n")
    p = sh(["cmake", "--install", BUILD, "--prefix", prefix])
    # The new logrotate default is named so that logrotate skips it (a taboo
    # extension), or it would rotate the same logs twice.
    for f, dist_name in [(conf, conf + ".dist"), (rot, rot + ".dpkg-dist")]:
        assert "Keeping: " + f in p.stdout, p.stdout
        assert open(f).read().endswith("# edited by the operator\n")
        dist = open(dist_name).read()
        assert "edited by the operator" not in dist and prefix + "/" in dist
    assert "script: " + prefix in open(conf + ".dist").read()
    assert sorted(os.listdir(os.path.dirname(rot))) == ["moongate", "moongate.dpkg-dist"]


def test_service_story_agrees(prefix, tmp_path):
    """The installed config, the unit and the logrotate snippet name the same
    pid file, log folder, binary and config."""
    conf = os.path.join(prefix, "etc/moongate/moongate.yaml")
    text = open(conf).read()
    data = yaml.safe_load(text)
    unit = unit_fields(os.path.join(prefix, "lib/systemd/system/moongate.service"))
    # pid_file: on, in the folder systemd makes for the unit (/run/<RuntimeDirectory>).
    assert data["pid_file"] == "/run/moongate/moongate.pid"
    assert unit["RuntimeDirectory"] == ["moongate"]
    assert os.path.dirname(data["pid_file"]) == "/run/" + unit["RuntimeDirectory"][0]
    # The log: stderr (the journal) by default; the commented log.file is in
    # the unit's LogsDirectory, and the logrotate snippet rotates it.
    assert "file" not in data["log"]
    m = re.search(r"^  # file: (/\S+)$", text, re.M)
    assert m, "no commented log.file"
    log_file = m.group(1)
    assert os.path.dirname(log_file) == "/var/log/" + unit["LogsDirectory"][0]
    assert unit["ReadWritePaths"] == [os.path.dirname(log_file)]
    # The service runs as User=moongate: user:/group: stay commented.
    assert "user" not in data and "group" not in data
    assert re.search(r"^# user: moongate$", text, re.M)
    rot = open(os.path.join(prefix, "etc/logrotate.d/moongate")).read()
    glob = re.search(r"^(/\S+) \{$", rot, re.M).group(1)
    assert glob == os.path.dirname(log_file) + "/*.log"
    assert not re.search(r"^\s+copytruncate", rot, re.M)
    assert re.search(r"^\s+create 0640 %s " % unit["User"][0], rot, re.M)
    post = re.search(r"postrotate\n(.*?)\n\s*endscript", rot, re.S).group(1).strip()
    assert post.startswith("%s/bin/moongate --signal reopen -c %s " % (prefix, conf)), post
    # ... and that command is one moongate understands: with no moongate
    # running it says "not running" (3), not a usage error (1).
    cmd = post.split(" >")[0].split()
    assert cmd[-1] == conf
    probe = str(tmp_path / "moongate.yaml")
    with open(probe, "w") as f:
        f.write(text.replace(data["pid_file"], str(tmp_path / "run" / "moongate.pid")))
    r = subprocess.run(cmd[:-1] + [probe], capture_output=True, text=True, timeout=10)
    assert r.returncode == 3, (r.returncode, r.stderr)


def test_installed_moongate_signal_reload_and_stop(prefix, tmp_path, monkeypatch):
    """The installed binary and config, run as a service would be (its
    pid_file moved into a temporary folder, free ports): `-S reload -c` and
    `-S stop -c` reach it, with their exit statuses."""
    moongate = os.path.join(prefix, "bin/moongate")
    text = open(os.path.join(prefix, "etc/moongate/moongate.yaml")).read()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pid_path = str(run_dir / "moongate.pid")
    port, admin = free_port(), free_port()
    served = (text.replace("pid_file: /run/moongate/moongate.pid", "pid_file: " + pid_path)
                  .replace("port: 8080", "port: %d" % port)
                  .replace("port: 9090", "port: %d" % admin))
    assert re.findall(r"^pid_file: (.*)$", served, re.M) == [pid_path]
    assert re.findall(r"^ *-? *port: (\d+)", served, re.M) == [str(port), str(admin)]
    monkeypatch.setattr(conftest, "BIN", moongate)
    g = Gateway(tmp_path / "gw", "-- unused: the config names the installed script",
                conf_text=served)

    def signal_cli(name):
        return subprocess.run([moongate, "-S", name, "-c", g.conf_path], capture_output=True,
                              text=True, timeout=10, cwd=str(tmp_path))
    try:
        g.start()  # waits for "moongate ready"; the pid file is written before
        assert g.proc.args[0] == moongate
        assert open(pid_path).read() == "%d\n" % g.pid
        since = g.mark()
        r = signal_cli("reload")
        assert r.returncode == 0, r.stderr
        g.wait_log(r"reload ok \(generation 2,", 10, since)
        assert g.alive()
        r = signal_cli("stop")
        assert r.returncode == 0, r.stderr
        assert g.wait_exit(10) == 0
        assert g.find_logs(r"shutdown complete", since)
        assert not os.path.exists(pid_path)
        r = signal_cli("reload")
        assert r.returncode == 3 and pid_path in r.stderr, (r.returncode, r.stderr)
    finally:
        g.cleanup()


def test_man_page_renders(prefix):
    need("man")
    page = os.path.join(prefix, "share/man/man8/moongate.8")
    p = sh(["man", "--warnings", "-l", page], env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
    assert p.stderr == "", p.stderr
    out = re.sub(r".\x08", "", p.stdout)
    for section in ["SYNOPSIS", "OPTIONS", "SIGNALS", "FILES", "EXIT STATUS", "SEE ALSO"]:
        assert re.search(r"^%s$" % section, out, re.M), section
    # Every option of --help is in the page, long and short (-S as well as -s).
    help_text = sh([BIN, "--help"]).stdout
    longs = set(re.findall(r"(--[a-z-]+)", help_text))
    shorts = set(re.findall(r"^\s+(-[A-Za-z]), --", help_text, re.M))
    assert "--signal" in longs and "-S" in shorts, help_text
    for opt in longs:
        assert opt in out, "%s is missing from moongate(8)" % opt
    for opt in shorts:
        assert re.search(r"(^|[\s,\[|])%s\b" % re.escape(opt), out, re.M), \
            "%s is missing from moongate(8)" % opt
    # The control features, each in its section.
    sections = dict(re.findall(r"^([A-Z][A-Z ]+)\n(.*?)(?=^[A-Z][A-Z ]+$|\Z)", out, re.M | re.S))
    for name in ["reload", "reopen", "quit", "stop"]:
        assert re.search(r"\b%s\b" % name, sections["OPTIONS"]), name
    for sig in ["SIGHUP", "SIGQUIT", "SIGUSR1", "SIGTERM"]:
        assert sig in sections["SIGNALS"], sig
    for path in ["/run/moongate/moongate.pid", "/var/log/moongate/moongate.log",
                 "/etc/logrotate.d/moongate", "/usr/bin/moongate-admin"]:
        assert re.search(r"^\s+%s$" % re.escape(path), sections["FILES"], re.M), path
    assert re.search(r"^\s+3\s+With\s+-S", sections["EXIT STATUS"], re.M)
    assert "moongate -S reload -c" in sections["EXAMPLES"]
    for word in ["pid_file", "log.file", "user", "group"]:
        assert word in out, word


def unit_fields(path):
    fields = {}
    for line in open(path):
        m = re.match(r"^([A-Za-z]+)=(.*)$", line.strip())
        if m:
            fields.setdefault(m.group(1), []).append(m.group(2))
    return fields


def test_unit_verifies(prefix):
    need("systemd-analyze")
    unit = os.path.join(prefix, "lib/systemd/system/moongate.service")
    # verify asks man(1) for Documentation=man:moongate(8): the installed page.
    p = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, MANPATH=os.path.join(prefix, "share/man")))
    assert p.returncode == 0 and p.stderr.strip() == "", (p.returncode, p.stderr)
    f = unit_fields(unit)
    conf = os.path.join(prefix, "etc/moongate/moongate.yaml")
    assert f["Type"] == ["notify"]
    assert f["ExecStart"] == ["%s/bin/moongate -c %s" % (prefix, conf)]
    assert f["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key, want in [("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                      ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                      ("ReadWritePaths", "/var/log/moongate"), ("Restart", "on-failure"),
                      ("RuntimeDirectory", "moongate"), ("LogsDirectory", "moongate"),
                      ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"), ("User", "moongate")]:
        assert f.get(key) == [want], (key, f.get(key))
    limits = yaml.safe_load(open(conf))["limits"]
    need_fds = limits["max_connections"] + limits["max_handshakes"] + 128
    assert int(f["LimitNOFILE"][0]) >= need_fds + 1024, (f["LimitNOFILE"], need_fds)


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    need("cpack", "dpkg-deb", "dpkg-shlibdeps")
    out = str(tmp_path_factory.mktemp("deb"))
    sh(["cpack", "-G", "DEB", "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-B", out],
       timeout=300)
    debs = [f for f in os.listdir(out) if f.endswith(".deb")]
    assert len(debs) == 1, os.listdir(out)
    return os.path.join(out, debs[0])


def test_deb_control(deb):
    def field(name):
        return sh(["dpkg-deb", "-f", deb, name]).stdout.strip()
    assert field("Package") == "moongate"
    assert field("Section") == "net"
    assert field("Maintainer")
    assert field("Description").startswith("Lua-scriptable WebSocket gateway\n")
    depends = field("Depends")
    for pkg in ["libwebsockets17", "libluajit-5.1-2", "libyaml-0-2", "libssl3", "lua-cjson",
                "adduser", "libc6"]:
        assert re.search(r"(^|[ ,|])%s( |,|$)" % re.escape(pkg), depends), (pkg, depends)
    # What moongate-admin runs (a /bin/sh script) is at least recommended.
    from conftest import ROOT
    admin = open(os.path.join(ROOT, "tools", "moongate-admin")).read()
    assert admin.startswith("#!/bin/sh\n")
    recommends = field("Recommends")
    for tool, pkg in [("curl ", "curl"), ("/usr/bin/python3 ", "python3")]:
        assert tool in admin
        assert re.search(r"(^|[ ,|])%s( |,|$)" % pkg, depends + ", " + recommends), \
            (pkg, depends, recommends)


def test_deb_contents_and_scripts(deb, tmp_path):
    listing = sh(["dpkg-deb", "-c", deb]).stdout
    for path in ["./usr/bin/moongate", "./usr/bin/moongate-cat", "./usr/bin/moongate-admin",
                 "./etc/moongate/moongate.yaml", "./etc/logrotate.d/moongate",
                 "./usr/share/doc/moongate/examples/monitoring/alerts.yml",
                 "./usr/share/moongate/scripts/app.lua", "./usr/share/moongate/static/index.html",
                 "./usr/share/man/man8/moongate.8", "./usr/share/doc/moongate/operations.md",
                 "./usr/lib/systemd/system/moongate.service"]:
        assert re.search(r" %s$" % re.escape(path), listing, re.M), path
    assert "_CPack_Packages" not in listing and "/tmp" not in listing
    assert re.search(r"^-rwxr-xr-x .* \./usr/bin/moongate-admin$", listing, re.M)
    ctl = str(tmp_path / "control")
    sh(["dpkg-deb", "-e", deb, ctl])
    assert open(os.path.join(ctl, "conffiles")).read().split() == [
        "/etc/moongate/moongate.yaml", "/etc/logrotate.d/moongate"]
    post = open(os.path.join(ctl, "postinst")).read()
    assert "adduser --system" in post and " moongate\n" in post
    for s in ["postinst", "prerm", "postrm"]:
        assert os.access(os.path.join(ctl, s), os.X_OK), s
        sh(["sh", "-n", os.path.join(ctl, s)])


def test_deb_extracted_config_checks_and_serves(deb, tmp_path, monkeypatch):
    root = str(tmp_path / "root")
    sh(["dpkg", "-x", deb, root])
    conf = os.path.join(root, "etc/moongate/moongate.yaml")
    text = open(conf).read()
    data = yaml.safe_load(text)
    assert data["script"] == "/usr/share/moongate/scripts/app.lua"
    assert data["static"]["root"] == "/usr/share/moongate/static"
    unit = unit_fields(os.path.join(root, "usr/lib/systemd/system/moongate.service"))
    assert unit["ExecStart"] == ["/usr/bin/moongate -c /etc/moongate/moongate.yaml"]
    # The service story with the package's paths: pid_file in the unit's
    # RuntimeDirectory, and logrotate's postrotate signalling through it.
    assert data["pid_file"] == "/run/%s/moongate.pid" % unit["RuntimeDirectory"][0]
    rot = open(os.path.join(root, "etc/logrotate.d/moongate")).read()
    assert "/usr/bin/moongate --signal reopen -c /etc/moongate/moongate.yaml " in rot
    assert rot.startswith("# logrotate") and "\n/var/log/moongate/*.log {\n" in rot
    # Every absolute path the config names is in the package ...
    for p in [data["script"], data["static"]["root"], data["lua"]["path"].split("?")[0]]:
        assert os.path.exists(root + p), p
    # ... and the packaged binary accepts the packaged config once those
    # paths are moved under the scratch root (the only change).
    moved = text.replace("/usr/share/moongate/", root + "/usr/share/moongate/")
    assert moved.count(root) == text.count("/usr/share/moongate/")
    copy = str(tmp_path / "moongate.yaml")
    with open(copy, "w") as f:
        f.write(moved)
    p = sh([os.path.join(root, "usr/bin/moongate"), "-t", "-c", copy], cwd=str(tmp_path))
    assert p.stdout.strip() == copy + ": configuration ok"

    # It serves: the packaged page and the packaged app (ports made free).
    port, admin = free_port(), free_port()
    pid_path = str(tmp_path / "moongate.pid")
    served = (moved.replace("port: 8080", "port: %d" % port)
                   .replace("port: 9090", "port: %d" % admin)
                   .replace("pid_file: /run/moongate/moongate.pid", "pid_file: " + pid_path))
    assert re.findall(r"^ *-? *port: (\d+)", served, re.M) == [str(port), str(admin)]
    assert re.findall(r"^pid_file: (.*)$", served, re.M) == [pid_path]
    monkeypatch.setattr(conftest, "BIN", os.path.join(root, "usr/bin/moongate"))
    g = Gateway(tmp_path / "run", "-- unused: the config names the packaged script",
                conf_text=served)
    try:
        g.start()  # waits for "moongate ready"
        assert g.proc.args[0] == os.path.join(root, "usr/bin/moongate")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        page = conn.getresponse()
        assert page.status == 200 and b"<title>moongate chat</title>" in page.read()

        async def hello():
            async with ws_connect("ws://127.0.0.1:%d/ws" % port) as ws:
                await ws.send("hello")
                for _ in range(10):
                    m = await ws_recv(ws)
                    if m == "received: hello":
                        return m
        assert run(hello()) == "received: hello"
        assert open(pid_path).read() == "%d\n" % g.pid
        assert g.stop() == 0
        assert not os.path.exists(pid_path)
    finally:
        g.cleanup()
