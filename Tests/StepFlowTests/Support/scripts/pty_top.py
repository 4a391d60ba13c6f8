#!/usr/bin/env python3
"""Drives `stepflow top RUN_DIR` in a pseudo-terminal, as a person at an SSH prompt would, and prints
what it saw as JSON: the last frame at 80x24, the last frame after a resize to 200x60, how `q` and
Ctrl-C ended it, and whether the terminal's settings came back.

Usage: pty_top.py STEPFLOW RUN_DIR
"""
import fcntl, json, os, pty, re, select, signal, struct, sys, termios, time

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def read_for(fd, seconds):
    out = b""
    end = time.time() + seconds
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def last_frame(raw):
    """The last complete frame: what follows the last cursor-home, as lines of visible text."""
    frames = raw.split(b"\x1b[H")
    for frame in reversed(frames[1:]):
        text = ANSI.sub(b"", frame).decode("utf-8", "replace")
        lines = [l.rstrip("\r") for l in text.split("\n")]
        if len(lines) > 3:
            return lines
    return []


def width(s):
    n = 0
    for ch in s:
        o = ord(ch)
        if 0x300 <= o <= 0x36F:
            continue
        wide = (0x1100 <= o <= 0x115F or 0x2E80 <= o <= 0xA4CF or 0xAC00 <= o <= 0xD7A3 or 0xF900 <= o <= 0xFAFF
                or 0xFF00 <= o <= 0xFF60 or 0x1F300 <= o <= 0x1F64F or 0x1F900 <= o <= 0x1F9FF)
        n += 2 if wide else 1
    return n


def session(stepflow, run_dir, end_with):
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm-256color"
        os.execv(stepflow, [stepflow, "top", run_dir])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    before = termios.tcgetattr(fd)
    small = read_for(fd, 2.5)
    during = termios.tcgetattr(fd)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))
    os.kill(pid, signal.SIGWINCH)
    large = read_for(fd, 2.0)
    os.write(fd, end_with)
    tail = read_for(fd, 2.0)
    status = None
    for _ in range(50):
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
            break
        time.sleep(0.1)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    try:
        after = termios.tcgetattr(fd)
    except termios.error:
        after = None
    os.close(fd)
    all_raw = small + large + tail
    small_lines, large_lines = last_frame(small), last_frame(large)
    return {
        "exit": status,
        "entered_alternate_screen": b"\x1b[?1049h" in small,
        "restored_screen": tail.rstrip(b"\r\n").endswith(b"\x1b[?25h\x1b[?1049l") or b"\x1b[?1049l" in tail,
        "raw_while_running": bool(during[3] & termios.ICANON) is False and bool(during[3] & termios.ECHO) is False,
        "settings_restored": after is not None and after[3] == before[3],
        "small": {"lines": len(small_lines), "widest": max((width(l) for l in small_lines), default=0), "text": small_lines},
        "large": {"lines": len(large_lines), "widest": max((width(l) for l in large_lines), default=0), "text": large_lines},
        "bytes": len(all_raw),
    }


def main():
    stepflow, run_dir = sys.argv[1], sys.argv[2]
    print(json.dumps({"q": session(stepflow, run_dir, b"q"), "ctrl_c": session(stepflow, run_dir, b"\x03")}))


main()
