"""The ``ipledger-cni`` process against a real ``ipledger serve``: whatever the runtime hands it
(config, environment, closed streams, files), it answers a CNI result or a CNI error object with a
code, and exits accordingly; never a traceback. No root needed: this is the quick lane."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from driver.domain.cni_spec import COMMANDS, SUPPORTED_VERSIONS
from driver.entrypoints import cni_plugin
from tests.e2e.harness import PluginProcess

# the codes of the CNI spec, and ipledger's own (100 a full range, 999 anything else)
CNI_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 100, 999}
SILENT_ON_SUCCESS = ("DEL", "CHECK", "GC", "STATUS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginProcess]:
    workdir = tmp_path_factory.mktemp("cni-process")
    process = PluginProcess(
        "ipl-cni-process",
        f"sqlite:///{workdir}/ledger.db",
        workdir,
        socket=str(workdir / "ipl.sock"),
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files a config's ``resolvConf`` may name."""
    where = tmp_path_factory.mktemp("resolv")
    (where / "text").write_text("nameserver 192.0.2.53\nsearch example.org\n")
    (where / "binary").write_bytes(bytes(range(256)) * 4)
    (where / "latin1").write_bytes(b"nameserver 192.0.2.53\nsearch caf\xe9.example\n")
    (where / "nul").write_bytes(b"nameserver 192.0.2.53\x00\n")
    (where / "dir").mkdir()
    return {
        "text": str(where / "text"),
        "binary": str(where / "binary"),
        "latin1": str(where / "latin1"),
        "nul": str(where / "nul"),
        "dir": str(where / "dir"),
        "missing": str(where / "missing"),
        "nul in path": f"{where}/a\x00b",
        "empty": "",
    }


def config(socket: str, version: str = "1.0.0", **ipam: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "type": "ipledger",
        "ranges": [[{"subnet": "2001:db8:c1::/64"}]],
        "ipledger": {"socket": socket},
        **ipam,
    }
    return {"cniVersion": version, "name": "fuzz", "type": "bridge", "ipam": section}


# -- the process as a runtime runs it


def run(
    command: str | None,
    stdin: bytes | str,
    *,
    close: tuple[int, ...] = (),
    env: dict[str, str] | dict[bytes, bytes] | None = None,
    **more: str,
) -> tuple[int, bytes, bytes]:
    """Run ``ipledger-cni``; its exit status, stdout and stderr. ``close``: the standard file
    descriptors the runtime left closed."""
    environment: dict[Any, Any] = env if env is not None else {"PATH": "/usr/bin:/bin", **more}
    if command is not None and env is None:
        environment["CNI_COMMAND"] = command
    data = stdin.encode() if isinstance(stdin, str) else stdin
    shell = " ".join(f"{fd}>&-" if fd else "0<&-" for fd in close)
    done = subprocess.run(
        ["/bin/sh", "-c", f'exec "$0" -m driver.entrypoints.cni_plugin {shell}', sys.executable],
        input=data,
        capture_output=True,
        env=environment,
        timeout=30,
        cwd=Path(__file__).parents[2],
    )
    return done.returncode, done.stdout, done.stderr


def cni_error(output: bytes) -> dict[str, Any]:
    """The CNI error object printed, checked for its form."""
    answer = json.loads(output)
    assert isinstance(answer, dict) and set(answer) <= {"cniVersion", "code", "msg", "details"}
    assert type(answer["code"]) is int and answer["code"] in CNI_CODES, answer
    assert isinstance(answer["msg"], str) and answer["msg"]
    assert answer["cniVersion"] in SUPPORTED_VERSIONS
    return answer


def test_a_binary_resolv_conf_is_cni_error_6_naming_the_file(server, files):
    ipam = {"resolvConf": files["binary"]}
    code, out, err = run(
        "ADD", json.dumps(config(server.socket, **ipam)), CNI_CONTAINERID="b", CNI_IFNAME="eth0"
    )
    assert b"Traceback" not in err
    answer = cni_error(out)
    assert (code, answer["code"]) == (1, 6)
    assert "ipam.resolvConf" in answer["msg"] and files["binary"] in answer["msg"]


def test_a_resolv_conf_that_is_no_regular_file_is_refused_without_waiting(server, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        started = time.monotonic()
        stdin = json.dumps(config(server.socket, resolvConf=path))
        code, out, err = run("ADD", stdin, CNI_CONTAINERID="f", CNI_IFNAME="eth0")
        assert time.monotonic() - started < 10
        assert b"Traceback" not in err
        answer = cni_error(out)
        assert (code, answer["code"]) == (1, 5) and path in answer["msg"]


def test_with_stdout_closed_the_error_goes_to_stderr_and_nothing_is_leased(server):
    stdin = json.dumps(config(server.socket))
    code, _, err = run("ADD", stdin, close=(1,), CNI_CONTAINERID="closed", CNI_IFNAME="eth0")
    assert code != 0 and b"Traceback" not in err
    assert "stdout" in cni_error(err)["msg"]
    # nothing was leased: CHECK of that attachment finds nothing
    code, out, _ = run("CHECK", stdin, CNI_CONTAINERID="closed", CNI_IFNAME="eth0")
    assert (code, cni_error(out)["code"]) == (1, 3)
    code, _, err = run("VERSION", "{}", close=(1,))
    assert code != 0 and b"Traceback" not in err and cni_error(err)


def test_with_stdin_or_stderr_closed_it_still_answers_a_cni_error(server):
    code, out, err = run("ADD", "", close=(0,), CNI_CONTAINERID="c", CNI_IFNAME="eth0")
    assert b"Traceback" not in err and (code, cni_error(out)["code"]) == (1, 6)
    code, out, _ = run("ADD", "not json", close=(2,), CNI_CONTAINERID="c", CNI_IFNAME="eth0")
    assert (code, cni_error(out)["code"]) == (1, 6)


def test_bytes_that_are_not_utf8_on_stdin_or_in_the_environment_are_cni_errors(server):
    code, out, err = run(
        "ADD", b'{"cniVersion": "1.0.0", "name": "\xff"}', CNI_CONTAINERID="c", CNI_IFNAME="eth0"
    )
    assert b"Traceback" not in err and (code, cni_error(out)["code"]) == (1, 6)
    env = {
        b"PATH": b"/usr/bin:/bin",
        b"CNI_COMMAND": b"ADD",
        b"CNI_CONTAINERID": b"c\xff\xfe",
        b"CNI_IFNAME": b"eth0",
    }
    code, out, err = run(None, json.dumps(config(server.socket)), env=env)
    assert b"Traceback" not in err and (code, cni_error(out)["code"]) == (1, 4)
    env[b"CNI_COMMAND"] = b"A\xffDD"
    code, out, err = run(None, json.dumps(config(server.socket)), env=env)
    assert b"Traceback" not in err and (code, cni_error(out)["code"]) == (1, 4)


def test_deeply_nested_json_on_stdin_is_cni_error_6(server):
    code, out, err = run(
        "ADD", "[" * 100_000 + "]" * 100_000, CNI_CONTAINERID="c", CNI_IFNAME="eth0"
    )
    assert b"Traceback" not in err and (code, cni_error(out)["code"]) == (1, 6)


# -- the same main(), in this process, fuzzed


def in_process(
    stdin: bytes, environ: dict[str, str], default_socket: str, stdout_closed: bool = False
) -> tuple[int, bytes, bytes]:
    """``cni_plugin.main()`` with these streams and this environment: its exit status, stdout and
    stderr. Any exception but SystemExit escapes, and fails the test."""
    out, err = io.BytesIO(), io.BytesIO()
    streams = (
        io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"),
        io.TextIOWrapper(out, encoding="utf-8", write_through=True),
        io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", write_through=True),
    )
    saved = sys.stdin, sys.stdout, sys.stderr, dict(os.environ), cni_plugin.DEFAULT_SOCKET
    sys.stdin, sys.stdout, sys.stderr = streams
    if stdout_closed:
        sys.stdout = None  # type: ignore[assignment]
    os.environ.clear()
    os.environ.update(environ)
    cni_plugin.DEFAULT_SOCKET = default_socket
    status: int = 0
    try:
        cni_plugin.main()
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    finally:
        sys.stdin, sys.stdout, sys.stderr, environ_before, cni_plugin.DEFAULT_SOCKET = saved
        os.environ.clear()
        os.environ.update(environ_before)
        for stream in streams:
            stream.detach()
    return status, out.getvalue(), err.getvalue()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
# what an environment variable can hold: any bytes but NUL, as Python decodes them
env_text = st.binary(max_size=40).map(
    lambda b: b.replace(b"\0", b"").decode("utf-8", "surrogateescape")
)


def mostly(
    valid: st.SearchStrategy[str], hostile: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    """A valid value four times in five, so that runs get past the first check."""
    return st.sampled_from([True] * 4 + [False]).flatmap(lambda ok: valid if ok else hostile)


identities = mostly(
    st.sampled_from(["c1", "c2", "pod-7f3a", "a" * 64])
    | st.from_regex(r"[a-z0-9]{1,64}", fullmatch=True),
    st.sampled_from(["", "x/y", "-", " c1", "c1\n", "é"]) | env_text,
)
ifnames = mostly(
    st.sampled_from(["eth0", "net1"]),
    st.sampled_from(["", "a" * 16, "e/0", "..", "eth 0"]) | env_text,
)
commands = mostly(
    st.sampled_from(COMMANDS), st.sampled_from(["", "add", "ADD ", "DELETE"]) | env_text
)
cni_args = mostly(
    st.sampled_from(
        ["", "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p", "K8S_POD_NAME=" + "p" * 253]
    ),
    st.sampled_from(["novalue", ";;", "K=" + "v" * 5000]) | env_text,
)
SUBNETS = ["2001:db8:c1::/64", "2001:db8:c2::/64", "2001:db8:c3::/64"]


@st.composite
def configs(draw: st.DrawFn, socket: str, files: dict[str, str]) -> bytes:
    """stdin: a valid config, mutated at a few places; or anything at all."""
    if draw(st.sampled_from([False] * 9 + [True])):
        return draw(
            st.binary(max_size=200)
            | json_values.map(lambda v: json.dumps(v).encode())
            | st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n)
        )
    conf = config(
        socket,
        version=draw(
            mostly(st.sampled_from(SUPPORTED_VERSIONS), st.sampled_from(["0.5.0", "2.0.0", ""]))
        ),
        ranges=[[{"subnet": draw(st.sampled_from(SUBNETS))}]],
    )
    conf["cni.dev/valid-attachments"] = [{"containerID": "c1", "ifname": "eth0"}]
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        targets = {"conf": conf, **_sections(conf)}
        where = draw(st.sampled_from(sorted(targets)))
        target = targets[where]
        key = draw(
            st.sampled_from(
                {
                    "conf": ["cniVersion", "name", "ipam", "cni.dev/valid-attachments", "type"],
                    "ipam": ["ranges", "routes", "dns", "resolvConf", "subnet", "ipledger"],
                    "range": ["subnet", "rangeStart", "rangeEnd", "gateway"],
                    "own": ["socket", "reuse", "hold", "quarantine", "shared", "hold_by", "x"],
                }[where]
            )
        )
        if key == "resolvConf":
            target[key] = draw(st.sampled_from(sorted(files.values())) | json_values)
        elif key == "cni.dev/valid-attachments":
            target[key] = draw(
                st.lists(
                    st.fixed_dictionaries({"containerID": identities, "ifname": ifnames})
                    | json_values,
                    max_size=4,
                )
                | json_values
            )
        elif key == "socket":
            target[key] = draw(st.sampled_from([socket, socket + ".nobody", "", "/"]) | json_values)
        else:
            target[key] = draw(json_values)
    try:
        return json.dumps(conf).encode()
    except ValueError:
        return b"{}"


def _sections(conf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The parts of a config that are still objects after the mutations so far."""
    found = {}
    ipam = conf.get("ipam")
    if isinstance(ipam, dict):
        found["ipam"] = ipam
        if isinstance(ipam.get("ipledger"), dict):
            found["own"] = ipam["ipledger"]
        ranges = ipam.get("ranges")
        if (
            isinstance(ranges, list)
            and ranges
            and isinstance(ranges[0], list)
            and ranges[0]
            and isinstance(ranges[0][0], dict)
        ):
            found["range"] = ranges[0][0]
    return found


def environments(draw: st.DrawFn) -> dict[str, str]:
    found = {"PATH": "/usr/bin:/bin"}
    for name, values in (
        ("CNI_COMMAND", commands),
        ("CNI_CONTAINERID", identities),
        ("CNI_IFNAME", ifnames),
        ("CNI_NETNS", st.sampled_from(["/var/run/netns/x", ""]) | env_text),
        ("CNI_ARGS", cni_args),
        ("CNI_PATH", st.sampled_from(["/usr/lib/cni", ""]) | env_text),
    ):
        if draw(st.sampled_from([True] * 19 + [False])):  # now and then not set at all
            found[name] = draw(values)
    return found


FUZZ_EXAMPLES = int(os.environ.get("IPLEDGER_CNI_FUZZ_EXAMPLES", "500"))


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_whatever_the_runtime_hands_it_the_plugin_answers_a_result_or_a_cni_error(
    server, files, tmp_path, data
):
    stdin = data.draw(configs(server.socket, files), label="stdin")
    environ = data.draw(st.composite(environments)(), label="environment")
    stdout_closed = data.draw(st.sampled_from([False] * 19 + [True]), label="stdout closed")
    status, out, err = in_process(stdin, environ, str(tmp_path / "default.sock"), stdout_closed)
    assert b"Traceback" not in err and b"Traceback" not in out
    command = environ.get("CNI_COMMAND")
    if stdout_closed:
        assert status != 0 and out == b""
        event(f"stdout closed: error {cni_error(err)['code']} on stderr")
        return
    if status != 0:
        assert status == 1
        answer = cni_error(out)
        assert answer["code"] != 999, answer  # every failure here is one CNI has a code for
        event(f"error {answer['code']}")
        return
    event(f"{command} succeeded")
    if not out:
        assert command in SILENT_ON_SUCCESS
        return
    answer = json.loads(out)
    if command == "VERSION":  # the config's cniVersion, echoed as the spec says
        assert answer["supportedVersions"] == list(SUPPORTED_VERSIONS)
        assert isinstance(answer["cniVersion"], str) and answer["cniVersion"]
        return
    assert command == "ADD"
    assert answer["cniVersion"] in SUPPORTED_VERSIONS
    if answer["cniVersion"] in ("0.1.0", "0.2.0"):  # {"ip4": {"ip", ...}, "ip6": ...}
        ips = [answer[f]["ip"] for f in ("ip4", "ip6") if f in answer]
    else:
        ips = [ip["address"] for ip in answer["ips"]]
    assert ips and all("/" in ip for ip in ips)


# -- GC of many attachments, and requests too large for any call


def test_gc_with_100000_valid_attachments_keeps_those_and_releases_the_rest(server, tmp_path):
    # a network of its own: the fuzz test before it may leave network "fuzz" on another range
    # with an attachment, and a range change is refused while attachments hold addresses
    conf = config(server.socket, "1.1.0", ranges=[[{"subnet": "2001:db8:c9::/64"}]])
    conf["name"] = "gc-many"
    default = str(tmp_path / "default.sock")
    stdin = json.dumps(conf).encode()

    def call(command: str, container: str) -> tuple[int, bytes]:
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_IFNAME": "eth0"}
        status, out, _ = in_process(stdin, env, default)
        return status, out

    containers = [f"{i:064x}" for i in range(300)]
    for container in containers:
        status, out = call("ADD", container)
        assert status == 0, out.decode(errors="replace")
    kept = set(containers[::2])
    valid = sorted(kept | {f"{i:064x}" for i in range(10**6, 10**6 + 100_000 - len(kept))})
    conf["cni.dev/valid-attachments"] = [{"containerID": c, "ifname": "eth0"} for c in valid]
    started = time.monotonic()
    code, out, err = run("GC", json.dumps(conf), CNI_PATH="/usr/lib/cni")
    took = time.monotonic() - started
    assert (code, out, b"Traceback" in err) == (0, b"", False), out
    print(f"GC with {len(valid)} valid attachments ({len(json.dumps(conf)):,} bytes): {took:.2f} s")
    for container in containers:
        status, out = call("CHECK", container)
        assert status == (0 if container in kept else 1), (container, out)
        if status:
            assert cni_error(out)["code"] == 3


@pytest.mark.parametrize(
    ("command", "padding"),
    [("ADD", 70 * 1024), ("DEL", 70 * 1024), ("CHECK", 70 * 1024), ("GC", 40 * 1024 * 1024)],
)
def test_a_request_too_large_for_any_call_is_a_permanent_cni_error_not_try_again(
    server, command, padding
):
    conf = config(server.socket, "1.1.0", padding="x" * padding)
    conf["cni.dev/valid-attachments"] = []
    code, out, err = run(command, json.dumps(conf), CNI_CONTAINERID="big", CNI_IFNAME="eth0")
    assert b"Traceback" not in err
    answer = cni_error(out)
    assert (code, answer["code"]) == (1, 7), answer
    assert "too large" in answer["msg"]
