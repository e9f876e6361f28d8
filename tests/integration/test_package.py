"""Install rules, the Debian package and the systemd unit (packaging/).

Reuses the build that made $MOONGATE_BIN ($MOONGATE_BUILD, else its folder):
nothing is configured or compiled again.  Checked:
- `cmake --install BUILD --prefix P`: P/bin/moongate and moongate-cat, the
  default config at P/etc/moongate naming P/share/moongate's script and page
  (absolute paths, no ../), docs and moongate(8) under P/share; the installed
  moongate passes `-t` on the installed config from another folder; the man
  page renders without warnings; a second install keeps an edited config.
- the unit installed there: `systemd-analyze verify` with nothing on stderr
  (it exits 0 on unknown keys and bad values and only warns), Type=notify,
  ExecReload sends HUP, LimitNOFILE above what limits.max_connections asks
  (max_connections + max_handshakes + 128, listen.c), the sandbox keys, and
  the same User= as the package's postinst creates.
- `cpack -G DEB` from the same build: the control fields (Section net,
  Depends with the packages of libwebsockets, LuaJIT, libyaml, OpenSSL, as
  dpkg-shlibdeps computed them), the contents, conffiles, maintainer
  scripts; `dpkg -x` into a scratch root, and the extracted moongate run with
  `-t` on the extracted config with its /usr/share/moongate paths moved into
  the scratch root (the one edit; every absolute path the config names is
  checked to exist in the root first); then that moongate (stripped by
  cpack) serves with it, on free ports: the packaged page over HTTP and the
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
    for f in ["bin/moongate", "bin/moongate-cat"]:
        assert os.access(os.path.join(prefix, f), os.X_OK), f
    for f in ["etc/moongate/moongate.yaml", "share/moongate/scripts/app.lua",
              "share/moongate/static/index.html", "share/doc/moongate/README.md",
              "share/doc/moongate/operations.md", "share/doc/moongate/lua-api.md",
              "share/doc/moongate/moongate-cat.md", "share/man/man8/moongate.8",
              "lib/systemd/system/moongate.service"]:
        assert os.path.isfile(os.path.join(prefix, f)), f


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
    with open(conf, "a") as f:
        f.write("# edited by the operator\n")
    p = sh(["cmake", "--install", BUILD, "--prefix", prefix])
    assert "Keeping: " + conf in p.stdout, p.stdout
    assert open(conf).read().endswith("# edited by the operator\n")
    dist = open(conf + ".dist").read()
    assert "edited by the operator" not in dist and "script: " + prefix in dist


def test_man_page_renders(prefix):
    need("man")
    page = os.path.join(prefix, "share/man/man8/moongate.8")
    p = sh(["man", "--warnings", "-l", page], env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
    assert p.stderr == "", p.stderr
    out = re.sub(r".\x08", "", p.stdout)
    for section in ["SYNOPSIS", "OPTIONS", "SIGNALS", "FILES", "EXIT STATUS", "SEE ALSO"]:
        assert re.search(r"^%s$" % section, out, re.M), section
    # Every option of --help is in the page.
    help_text = sh([BIN, "--help"]).stdout
    for opt in set(re.findall(r"(--[a-z-]+)", help_text)):
        assert opt in out, "%s is missing from moongate(8)" % opt


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


def test_deb_contents_and_scripts(deb, tmp_path):
    listing = sh(["dpkg-deb", "-c", deb]).stdout
    for path in ["./usr/bin/moongate", "./usr/bin/moongate-cat", "./etc/moongate/moongate.yaml",
                 "./usr/share/moongate/scripts/app.lua", "./usr/share/moongate/static/index.html",
                 "./usr/share/man/man8/moongate.8", "./usr/share/doc/moongate/operations.md",
                 "./usr/lib/systemd/system/moongate.service"]:
        assert re.search(r" %s$" % re.escape(path), listing, re.M), path
    assert "_CPack_Packages" not in listing and "/tmp" not in listing
    ctl = str(tmp_path / "control")
    sh(["dpkg-deb", "-e", deb, ctl])
    assert open(os.path.join(ctl, "conffiles")).read().split() == ["/etc/moongate/moongate.yaml"]
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
    served = moved.replace("port: 8080", "port: %d" % port).replace("port: 9090", "port: %d" % admin)
    assert re.findall(r"^ *-? *port: (\d+)", served, re.M) == [str(port), str(admin)]
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
        assert g.stop() == 0
    finally:
        g.cleanup()
