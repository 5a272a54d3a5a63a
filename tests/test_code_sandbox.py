"""Hostile programs in the code sandbox: each is an observation, and the pool, the host and its files are unharmed."""
from __future__ import annotations

import os
import resource
import socket

import pytest

from evoagent.envs.code.sandbox import MAX_PROGRAM_CHARS, UID_BASE, Limits, Sandbox

SHORT = Limits(wall_s=1.5, cpu_s=1.0)
SECRET = "sk-ant-test-secret-never-seen"


@pytest.fixture(scope="module")
def sandbox():
    old = os.environ.get("ANTHROPIC_API_KEY")
    os.environ["ANTHROPIC_API_KEY"] = SECRET  # the workers start with this in the campaign's environment
    box = Sandbox(size=2)
    yield box
    box.close()
    if old is None:
        os.environ.pop("ANTHROPIC_API_KEY", None)
    else:
        os.environ["ANTHROPIC_API_KEY"] = old


def _stray_processes() -> list[str]:
    """Host processes of the sandbox uids that are not a worker's fork server (bwrap runs as root)."""
    mine = range(UID_BASE + os.getpid() * 16, UID_BASE + os.getpid() * 16 + 16)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        uid = int(fields["Uid"].split()[0])
        if uid in mine and b"forkserver.py" not in cmdline and not fields["State"].strip().startswith("Z"):
            found.append(f"{pid} {cmdline[:80]!r}")
    return found


def _healthy(sandbox: Sandbox) -> None:
    result = sandbox.run("def f(x):\n    return x * 2\n", ["assert f(2) == 4"])
    assert result.all_passed, result
    assert _stray_processes() == []
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 2 * 1024 * 1024  # KiB: campaign < 2 GB


def test_visible_test_feedback(sandbox):
    result = sandbox.run("def f(x):\n    return x + 1\nprint('hello')\n",
                         ["assert f(1) == 2", "assert f(2) == 4", "f(None)"])
    assert result.status == "ok" and result.output == "hello\n"
    assert [t["ok"] for t in result.tests] == [True, False, False]
    assert result.tests[1]["message"] == "AssertionError # output: 3"
    assert result.tests[2]["message"].startswith("TypeError: unsupported operand")


@pytest.mark.parametrize("program, status", [
    ("def f(:\n", "syntax"),
    ("raise ValueError('no')", "error"),
    ("import sys\nsys.exit(3)", "error"),
])
def test_broken_programs(sandbox, program, status):
    result = sandbox.run(program, ["assert True"])
    assert result.status == status and not result.tests[0]["ok"]


def test_refused_before_a_worker(sandbox):
    assert sandbox.run(b"print(1)", ["assert 1"]).status == "refused"
    assert sandbox.run("x = 1\n" * (MAX_PROGRAM_CHARS // 6 + 1), []).status == "refused"
    assert sandbox.run("print(1)\x00", []).status == "refused"


HOSTILE = {
    "fork bomb": ("import os\nwhile True:\n    os.fork()\n", {"error", "timeout", "crashed"}),
    "thread bomb": ("import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()\n",
                    {"error"}),
    "busy loop": ("while True:\n    pass\n", {"timeout"}),
    "50 GB": ("x = bytearray(50 * 10**9)\n", {"memory"}),
    "10 GB to stdout": ("import sys\nchunk = 'x' * 10**6\nfor _ in range(10**4):\n    sys.stdout.write(chunk)\n",
                        {"output"}),
    "recursion": ("import sys\nsys.setrecursionlimit(10**9)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
                  {"crashed", "memory", "timeout", "error"}),
    "segfault": ("import ctypes\nctypes.string_at(0)\n", {"crashed"}),
    "hanging C import": ("open('hang.py', 'w').write('import ctypes, signal\\nsignal.signal(signal.SIGALRM, "
                         "signal.SIG_IGN)\\nctypes.CDLL(None).pause()\\n')\nimport sys\nsys.path.insert(0, '.')\n"
                         "import hang\n", {"timeout"}),
    "ignore signals": ("import signal\nfor s in (signal.SIGXCPU, signal.SIGTERM, signal.SIGALRM, signal.SIGINT, "
                       "signal.SIGHUP):\n    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n", {"timeout"}),
    "close stdout": ("import os\nos.close(1)\nos.close(2)\nprint('x')\n", {"error", "ok"}),
    "kill parent": ("import os\nos.kill(os.getppid(), 9)\n", {"crashed"}),
    "kill everything": ("import os\nos.kill(-1, 9)\n", {"crashed"}),
    "subprocess daemon": ("import subprocess\nsubprocess.Popen(['/bin/sh', '-c', 'sleep 1000'], start_new_session=True)\n"
                          "print('spawned')\n", {"ok"}),
    "shadow": ("print(open('/etc/shadow').read())\n", {"error"}),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_an_observation(sandbox, name):
    program, statuses = HOSTILE[name]
    result = sandbox.run(program, ["assert True"], SHORT)
    assert result.status in statuses, (name, result)
    assert result.maxrss_kb is None or result.maxrss_kb < 2 * 1024 * 1024
    assert len(result.output) <= Limits().output_chars
    _healthy(sandbox)


def test_no_secrets_in_the_environment(sandbox):
    result = sandbox.run("import os\nprint(dict(os.environ))\nprint(os.path.expanduser('~'))\n"
                         "try:\n    print(open('/proc/self/environ', 'rb').read())\nexcept OSError as e:\n    print(e)\n"
                         "try:\n    print(open('/proc/1/environ', 'rb').read())\nexcept OSError as e:\n    print(e)\n", [])
    assert result.status == "ok"
    assert SECRET not in result.output and "ANTHROPIC" not in result.output
    assert "'HOME'" not in result.output


def test_writes_outside_the_temp_dir_fail(sandbox, tmp_path):
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    targets = [str(tmp_path / "escaped"), os.path.expanduser("~/escaped-e21"), f"/tmp/escaped-e21-{os.getpid()}",
               os.path.join(project, "escaped-e21"), "/usr/escaped-e21", "/escaped-e21"]
    program = "import os\nfor path in %r:\n    try:\n        os.makedirs(os.path.dirname(path), exist_ok=True)\n" \
              "        open(path, 'w').write('x')\n        print('WROTE', path)\n    except OSError:\n        pass\n" \
              "open('inside.txt', 'w').write('fine')\nprint(open('inside.txt').read())\n" % (targets,)
    result = sandbox.run(program, [])
    assert result.status == "ok" and result.output.endswith("fine\n"), result
    for path in targets:
        assert not os.path.exists(path), path
    assert list(tmp_path.iterdir()) == []
    _healthy(sandbox)


def test_deleting_files_touches_nothing_outside(sandbox, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("data")
    program = ("import os, shutil\nfor path in [%r, '/usr/bin', '/sandbox', '/tmp', '/proc/1']:\n"
               "    shutil.rmtree(path, ignore_errors=True)\n    try:\n        os.remove(path)\n"
               "    except OSError:\n        pass\n" % str(keep))
    result = sandbox.run(program, [])
    assert result.status == "ok"
    assert keep.read_text() == "data" and os.path.exists("/usr/bin/env")
    _healthy(sandbox)


def test_loopback_listener_sees_nothing(sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        program = ("import socket\nfor host in ('127.0.0.1', 'localhost', '0.0.0.0'):\n    try:\n"
                   "        s = socket.create_connection((host, %d), timeout=0.5)\n        s.sendall(b'hello')\n"
                   "        print('CONNECTED', host)\n    except OSError as e:\n        print('refused', host)\n" % port)
        result = sandbox.run(program, [])
        assert result.status == "ok" and "CONNECTED" not in result.output, result
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    _healthy(sandbox)


def test_threads_share_the_pool(sandbox):
    from concurrent.futures import ThreadPoolExecutor

    programs = [f"def f():\n    return {i}\n" for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: sandbox.run(p, [f"assert f() == {p.split()[-1]}"]), programs))
    assert all(r.all_passed for r in results)
    assert sandbox.started <= 2 + 3  # two slots; a few restarts from the hostile tests above at most


def test_nothing_carries_over_between_programs(sandbox):
    first = sandbox.run("import os\nopen('/tmp/cache', 'w').write('secret')\nos.makedirs('/tmp/d/e')\n"
                        "os.chmod('/tmp/d', 0)\nos.chmod('/tmp', 0)\nopen('left.txt', 'w').write('x')\n", [])
    assert first.status == "ok", first
    second = sandbox.run("import os\nprint(sorted(os.listdir('/tmp')), sorted(os.listdir('.')))\n", [])
    assert second.status == "ok" and second.output == "['output', 'run'] []\n", second


def test_workers_end_with_the_campaign_process():
    """kill -9 of the process holding the pool: its workers see their socket close and exit."""
    import signal
    import subprocess
    import sys
    import time

    script = ("from evoagent.envs.code.sandbox import Sandbox\nbox = Sandbox(size=1)\n"
              "assert box.run('print(1)', []).output == '1\\n'\n"
              "print(box._idle[0].proc.pid, flush=True)\nimport time\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for _ in range(100):  # the worker is the killed process's child: gone once it has exited
            try:
                with open(f"/proc/{worker}/status") as handle:
                    if "State:\tZ" in handle.read():
                        break
            except FileNotFoundError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the sandbox worker outlived the process that started it")
    finally:
        proc.kill()
        proc.wait()
