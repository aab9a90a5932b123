"""The proxy's sentinel: a small process that outlives a killed proxy just long enough to take
its Codex children and its scratch folder with it.

Run as a script of its own (`python -I -S sentinel.py SIGNUM`: the standard library only,
nothing of the package, and as little of it as will do, since every proxy starts one), started
by `child.Sentinel` in a session of its own, so that no terminal's Ctrl-C or hang-up reaches it.
SIGNUM is the signal that ends a group (SIGKILL's number; the `signal` module alone would take
longer to import than the rest of the script to run). It reads its stdin, a pipe whose other
end only the proxy holds, one line per fact:

    watch <pgid>     a Codex process group has started
    forget <pgid>    that group has been stopped and its leader reaped
    folder <path>    the proxy's scratch folder

The pipe ends when the proxy does, however it ends: a clean exit, a crash, `kill -9`, the OOM
killer. Then the sentinel sends SIGKILL to every group still watched (the parent-death signal
of `child.py` reaches only each group's leader; this reaches its grandchildren too, such as the
native binary the npm `codex` wrapper runs) and removes the folders. After a clean exit there
is nothing left to do, and it exits at once.
"""

import os
import sys


def main():
    kill_signal = int(sys.argv[1])
    groups = set()
    folders = []
    for raw in sys.stdin.buffer:
        verb, _, argument = raw.decode("utf-8", "surrogateescape").rstrip("\n").partition(" ")
        if verb == "watch":
            groups.add(int(argument))
        elif verb == "forget":
            groups.discard(int(argument))
        elif verb == "folder":
            folders.append(argument)
    for pgid in groups:
        try:  # noqa: SIM105 (contextlib would double the script's start-up time)
            os.killpg(pgid, kill_signal)
        except OSError:  # gone already
            pass
    folders = [folder for folder in folders if os.path.lexists(folder)]
    if folders:
        # Imported only when needed: after a clean exit there is nothing to remove, and the
        # sentinel starts and ends with every proxy, so it stays small.
        import shutil

        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
