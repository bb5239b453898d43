"""A real RTSP camera for the tests: GStreamer's gst-rtsp-server in a child process on a free loopback port.

GStreamer's Python bindings (``gi``) come from Debian (``python3-gi``,
``gir1.2-gst-rtsp-server-1.0``; ``.ci/run`` installs them) and only import
under Debian's own ``/usr/bin/python3``, so the server runs as a child
process of that interpreter (this file, run as a script) and the tests talk
to it through its URL. Stopping the process is a camera that goes away;
starting it again on the same port is the camera coming back.

Each mount is either a synthetic live camera (``videotestsrc is-live=true``:
never ends, costs little) or a clip (``filesrc ... qtdemux``: the shared
videos, played once in real time per client session).

``rtsp_available()`` says why GStreamer cannot be used here; the module-scoped fixture
``rtsp`` (in conftest: this file also runs under Debian's Python, which has no pytest) skips with that
reason outside CI and fails in CI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
_PROBE = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
          "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
          "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')")
INSTALL = ("apt-get install -y python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
           "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav")


def rtsp_available() -> str | None:
    """``None`` when a GStreamer RTSP server can run here, else why not (and how to install it)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} (Debian's Python, which has GStreamer's bindings)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"GStreamer's RTSP server is not usable ({last}); install it: {INSTALL}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(source: str) -> str:
    encode = ("x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=500 "
              "! rtph264pay name=pay0 pt=96")
    if source.startswith("test:"):  # test:WxH@FPS, a synthetic live camera
        size, fps = source[5:].split("@")
        w, h = size.split("x")
        return (f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={fps}/1 "
                f"! videoconvert ! {encode} )")
    return f"( filesrc location={source} ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! {encode} )"


class RtspCamera:
    """An RTSP server with one mount per camera, on ``port`` (a free one by default); ``with`` stops it.

    ``mounts`` maps a path (``"cam0"``) to ``"test:320x240@25"`` (a synthetic live camera) or a clip's path.
    :meth:`stop` and :meth:`start` are the camera going away and coming back on the same port.
    """

    def __init__(self, mounts: dict[str, str], port: int | None = None) -> None:
        self.mounts = dict(mounts)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, mount: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{mount}"

    def start(self, timeout: float = 15.0) -> RtspCamera:
        args = [SYSTEM_PYTHON, str(Path(__file__).resolve()), str(self.port)]
        args += [f"{k}={v}" for k, v in self.mounts.items()]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # ready when the port accepts
            if self.proc.poll() is not None:
                raise RuntimeError(f"the RTSP server exited ({self.proc.returncode}) before listening")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the RTSP server did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> RtspCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(port: int, mounts: dict[str, str]) -> None:  # runs under /usr/bin/python3
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    points = server.get_mount_points()
    for mount, source in mounts.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(_launch(source))
        factory.set_shared(True)
        points.add_factory(f"/{mount}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    GLib.MainLoop().run()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), dict(arg.split("=", 1) for arg in sys.argv[2:]))
